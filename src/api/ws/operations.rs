//! The operations open on one WebSocket connection, as the wire shows them, against
//! `WS_MAX_SUBSCRIPTIONS`, and the answer to one that may not start.

use axum::extract::ws::Message;
use std::collections::HashSet;
use std::sync::Mutex;

/// Why an operation may not start.
pub(super) enum Refusal {
    /// The connection runs `WS_MAX_SUBSCRIPTIONS` operations already.
    Full(usize),
    /// An operation with this id runs already (async-graphql would replace it silently).
    Running,
}

/// The error answering an operation that may not start, in the client's protocol.
pub(super) fn refused_operation(id: &str, legacy: bool, refusal: &Refusal) -> Message {
    let error = match refusal {
        Refusal::Full(max) => serde_json::json!({
            "message": format!(
                "this connection already runs {max} operations, the most allowed \
                 (WS_MAX_SUBSCRIPTIONS); complete one first"
            ),
            "extensions": {"code": crate::error::Code::TooManySubscriptions.as_str()},
        }),
        Refusal::Running => serde_json::json!({
            "message": format!("an operation with id {id:?} is running; use a new id"),
            "extensions": {"code": crate::error::Code::InvalidInput.as_str()},
        }),
    };
    // graphql-transport-ws sends a list of errors; the legacy protocol one error.
    let payload = if legacy {
        error
    } else {
        serde_json::json!([error])
    };
    // Written id first, so the writer (`Operations::sent`, which looks for messages that
    // start with their type) never takes it for the end of a running operation of that id.
    let answer = format!(
        r#"{{"id":{},"type":"error","payload":{payload}}}"#,
        serde_json::Value::from(id)
    );
    Message::Text(answer.into())
}

/// The operations open on one connection, as the wire shows them: an id enters when the
/// client starts it and leaves when the server's `complete` for it is written or the client
/// stops it. async-graphql keeps its own map but does not expose it.
pub(super) struct Operations {
    open: Mutex<HashSet<String>>,
    /// `WS_MAX_SUBSCRIPTIONS`: the most open at once.
    pub(super) max: usize,
}

impl Operations {
    pub(super) fn new(max: usize) -> Self {
        Self {
            open: Mutex::default(),
            max,
        }
    }

    /// Notes an operation the client starts, or says why it may not. An id leaves only when
    /// the server writes its `complete` (async-graphql answers a client's stop with one), so
    /// a stop and a new start under the same id cannot slip past the count.
    pub(super) fn started(&self, id: &str) -> Result<(), Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.contains(id) {
            return Err(Refusal::Running);
        }
        if open.len() >= self.max {
            return Err(Refusal::Full(self.max));
        }
        open.insert(id.to_owned());
        Ok(())
    }

    /// Notes an operation that ended.
    pub(super) fn ended(&self, id: &str) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Notes a message on its way to the client; a `complete` ends its operation.
    pub(super) fn sent(&self, message: &Message) {
        // async-graphql writes the tag first, so only the messages that end an operation need
        // parsing: a `complete`, or an `error` (an operation that fails to start, or ours for
        // one refused, gets no `complete` after it).
        let Message::Text(text) = message else {
            return;
        };
        let text = text.as_str();
        if !text.starts_with(r#"{"type":"complete""#) && !text.starts_with(r#"{"type":"error""#) {
            return;
        }
        #[derive(serde::Deserialize)]
        struct Complete {
            id: String,
        }
        if let Ok(complete) = serde_json::from_str::<Complete>(text) {
            self.ended(&complete.id);
        }
    }

    /// Takes every open id, sorted (so a client sees a stable order).
    pub(super) fn take(&self) -> Vec<String> {
        let mut ids: Vec<String> =
            std::mem::take(&mut *self.open.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        ids.sort_unstable();
        ids
    }
}
