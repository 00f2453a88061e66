//! Conversations as the app keeps them: messages with the facts shown under each
//! reply, titles, and the JSON form used for storage, export and import.

use charter_core::{Message, Role};
use serde::{Deserialize, Serialize};

/// The export format's version.
pub const EXPORT_VERSION: u32 = 1;

/// A message as the app shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub text: String,
    /// Why the reply ended (assistant messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Decode speed (assistant messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// Tokens generated (assistant messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_tokens: Option<usize>,
}

impl ChatMessage {
    /// A message without reply facts.
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        ChatMessage { role, text: text.into(), stop_reason: None, tokens_per_second: None, n_tokens: None }
    }
}

/// One conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Stable id.
    pub id: String,
    /// Shown in the list.
    pub title: String,
    /// Milliseconds since the epoch of the last change.
    pub updated: f64,
    /// The messages, in order.
    pub messages: Vec<ChatMessage>,
}

impl Conversation {
    /// An empty conversation.
    pub fn new(id: String, now_ms: f64) -> Self {
        Conversation { id, title: "New chat".into(), updated: now_ms, messages: Vec::new() }
    }

    /// The messages as the model sees them.
    pub fn model_messages(&self) -> Vec<Message> {
        self.messages.iter().map(|m| Message::new(m.role, m.text.clone())).collect()
    }

    /// Names the conversation after its first user message.
    pub fn retitle(&mut self) {
        if let Some(first) = self.messages.iter().find(|m| m.role == Role::User) {
            self.title = title_from(&first.text);
        }
    }
}

/// The first line of `text`, at most 48 characters.
pub fn title_from(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("New chat");
    let mut title: String = line.chars().take(48).collect();
    if line.chars().count() > 48 {
        title.push('…');
    }
    title
}

/// The export file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Export {
    /// What the file is.
    pub format: String,
    /// [`EXPORT_VERSION`].
    pub version: u32,
    /// The conversations.
    pub conversations: Vec<Conversation>,
}

/// Serializes conversations for export.
pub fn export(conversations: &[Conversation]) -> String {
    let file = Export { format: "charter-conversations".into(), version: EXPORT_VERSION, conversations: conversations.to_vec() };
    serde_json::to_string_pretty(&file).unwrap_or_default()
}

/// Reads an export file, with a clear message when it is not one.
pub fn import(text: &str) -> Result<Vec<Conversation>, String> {
    let file: Export = serde_json::from_str(text).map_err(|e| format!("this is not a Charter conversations file: {e}"))?;
    if file.format != "charter-conversations" {
        return Err(format!("this file's format is {:?}, not charter-conversations", file.format));
    }
    if file.version > EXPORT_VERSION {
        return Err(format!("this file is version {}, newer than this Charter reads ({EXPORT_VERSION})", file.version));
    }
    Ok(file.conversations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_and_import_round_trip() {
        let mut c = Conversation::new("c1".into(), 1.0);
        c.messages.push(ChatMessage::new(Role::User, "What is <b>2+2</b>?\nSecond line"));
        let mut reply = ChatMessage::new(Role::Assistant, "4");
        reply.stop_reason = Some("end_of_turn".into());
        reply.tokens_per_second = Some(12.5);
        c.messages.push(reply);
        c.retitle();
        assert_eq!(c.title, "What is <b>2+2</b>?");
        let back = import(&export(std::slice::from_ref(&c))).expect("imports");
        assert_eq!(back, vec![c.clone()]);
        assert_eq!(c.model_messages()[1], Message::assistant("4"));
    }

    #[test]
    fn foreign_files_are_refused_with_a_reason() {
        assert!(import("[]").expect_err("not an export").contains("not a Charter"));
        let other = r#"{"format":"x","version":1,"conversations":[]}"#;
        assert!(import(other).expect_err("wrong format").contains("format"));
        let newer = r#"{"format":"charter-conversations","version":99,"conversations":[]}"#;
        assert!(import(newer).expect_err("newer").contains("newer"));
    }

    #[test]
    fn long_titles_are_cut() {
        let t = title_from(&"x".repeat(100));
        assert_eq!(t.chars().count(), 49);
        assert_eq!(title_from("\n\n  hi  \nthere"), "hi");
    }
}
