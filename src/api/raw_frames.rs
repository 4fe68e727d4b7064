//! Pre-rendered JSON carried through async-graphql's WebSocket transport without being
//! rendered again per subscriber.
//!
//! async-graphql builds every `next` message from a `Value` tree and serialises it per
//! connection; it has no raw-JSON value. So a resolver that already holds an event's JSON
//! (rendered once per job and selection, see [`crate::jobs::ProgressFrame`]) answers a short
//! placeholder string instead ([`RawFrames::hold`]), and the connection's writer swaps the
//! placeholder for the JSON as it sends the message ([`RawFrames::splice`]). Queued messages
//! stay small, so a socket that does not read holds placeholders, not copies of events.

use axum::extract::ws::Message;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Opens every placeholder, as it appears in the JSON text: a control character cannot
/// appear unescaped, and JSON escapes it this way, so no domain or message looks like it.
const MARK: &str = "\"\\u0001raw:";

/// One connection's held renderings, by placeholder number.
#[derive(Default)]
pub struct RawFrames {
    held: Mutex<HashMap<u64, Arc<str>>>,
    next: AtomicU64,
}

impl RawFrames {
    /// Keeps `json` for this connection's writer and returns the string value that stands
    /// for it in the message.
    pub fn hold(&self, json: Arc<str>) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(n, json);
        format!("\u{1}raw:{n}")
    }

    /// `message` with its placeholder (the last one; a `next` carries one) replaced by the
    /// JSON it stands for.
    pub fn splice(&self, message: Message) -> Message {
        let Message::Text(text) = &message else {
            return message;
        };
        let text = text.as_str();
        let Some(start) = text.rfind(MARK) else {
            return message;
        };
        let digits = &text[start + MARK.len()..];
        let Some(len) = digits.find('"') else {
            return message;
        };
        let Ok(n) = digits[..len].parse::<u64>() else {
            return message;
        };
        let Some(json) = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&n)
        else {
            return message;
        };
        let end = start + MARK.len() + len + 1;
        let mut out = String::with_capacity(text.len() + json.len());
        out.push_str(&text[..start]);
        out.push_str(&json);
        out.push_str(&text[end..]);
        Message::Text(out.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(message: &Message) -> &str {
        match message {
            Message::Text(text) => text.as_str(),
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn a_placeholder_is_replaced_by_its_json_once() {
        let frames = RawFrames::default();
        let placeholder = frames.hold(Arc::from(r#"{"a":[1,"x"]}"#));
        let value = serde_json::json!({"type": "next", "id": "1",
            "payload": {"data": {"jobProgress": placeholder}}});
        let message = Message::Text(value.to_string().into());
        let sent = frames.splice(message.clone());
        let parsed: serde_json::Value = serde_json::from_str(text(&sent)).unwrap();
        assert_eq!(
            parsed["payload"]["data"]["jobProgress"],
            serde_json::json!({"a": [1, "x"]})
        );
        // Given back once: a second message with the same placeholder goes out unchanged.
        assert_eq!(text(&frames.splice(message.clone())), text(&message));
    }

    #[test]
    fn messages_without_a_placeholder_pass_unchanged() {
        let frames = RawFrames::default();
        frames.hold(Arc::from("{}"));
        let message = Message::Text(r#"{"type":"next","id":"raw:0","payload":{}}"#.into());
        assert_eq!(text(&frames.splice(message.clone())), text(&message));
    }
}
