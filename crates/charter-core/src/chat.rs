//! The conversation as the model's template sees it: roles and messages.

use serde::{Deserialize, Serialize};

/// Who wrote a message. The role comes from where a message sits in the
/// conversation, never from what its text claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions above the user: Charter's constitution and the operator's block.
    System,
    /// The person chatting.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The name chat templates use.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What it says, as typed or generated. Never parsed for control tokens.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message { role, content: content.into() }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// `messages` with each run of messages from one role joined into one message, their
/// texts separated by a blank line. Many chat templates refuse two user messages in a row
/// (Gemma's raises an error), yet a conversation gets them: text added to a session
/// before the next question, or a question asked again after a reply that failed.
pub fn merge_runs(messages: &[Message]) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    for message in messages {
        match out.last_mut() {
            Some(last) if last.role == message.role => {
                last.content.push_str("\n\n");
                last.content.push_str(&message.content);
            }
            _ => out.push(message.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_one_role_become_one_message() {
        let merged = merge_runs(&[
            Message::system("rules"),
            Message::user("a"),
            Message::user("b"),
            Message::assistant("c"),
            Message::user("d"),
            Message::user("e"),
            Message::user("f"),
        ]);
        assert_eq!(
            merged,
            vec![Message::system("rules"), Message::user("a\n\nb"), Message::assistant("c"), Message::user("d\n\ne\n\nf")]
        );
        assert!(merge_runs(&[]).is_empty());
    }
}
