//! Keeping a conversation inside the model's window: when it outgrows the context, the
//! oldest user/assistant exchanges go first. The system block and the current turn are
//! never cut.

use crate::chat::{Message, Role};

/// Drops the oldest exchanges until `fits(messages)` holds. A leading system message
/// and the last message stay whatever happens; an exchange is a user message with the
/// assistant messages that follow it. Returns how many messages were dropped; if even
/// the system message and the current turn do not fit, the caller's `fits` still fails
/// and the caller reports it.
pub fn trim_to_fit(messages: &mut Vec<Message>, mut fits: impl FnMut(&[Message]) -> bool) -> usize {
    let mut dropped = 0;
    let start = usize::from(messages.first().is_some_and(|m| m.role == Role::System));
    while !fits(messages) {
        // Everything between the system message and the current turn is droppable.
        if messages.len() <= start + 1 {
            break;
        }
        let mut end = start + 1;
        while end < messages.len() - 1 && messages[end].role != Role::User {
            end += 1;
        }
        dropped += end - start;
        messages.drain(start..end);
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convo() -> Vec<Message> {
        vec![
            Message::system("rules"),
            Message::user("u1"),
            Message::assistant("a1"),
            Message::user("u2"),
            Message::assistant("a2"),
            Message::user("u3"),
        ]
    }

    #[test]
    fn oldest_exchanges_go_first_and_system_and_current_turn_stay() {
        let mut m = convo();
        let dropped = trim_to_fit(&mut m, |m| m.len() <= 4);
        assert_eq!(dropped, 2);
        assert_eq!(m, vec![Message::system("rules"), Message::user("u2"), Message::assistant("a2"), Message::user("u3")]);
        let mut m = convo();
        assert_eq!(trim_to_fit(&mut m, |_| false), 4);
        assert_eq!(m, vec![Message::system("rules"), Message::user("u3")]);
    }

    #[test]
    fn nothing_is_dropped_when_it_fits_and_without_a_system_message_too() {
        let mut m = convo();
        assert_eq!(trim_to_fit(&mut m, |_| true), 0);
        assert_eq!(m, convo());
        let mut m = convo()[1..].to_vec();
        assert_eq!(trim_to_fit(&mut m, |m| m.len() <= 3), 2);
        assert_eq!(m[0], Message::user("u2"));
    }
}
