//! GraphQL subscriptions over WebSocket: the upgrade, one task per connection, its deadlines,
//! the connection caps, and a clean end at shutdown.
//!
//! async-graphql speaks the two subprotocols; this module wraps it. Its `WebSocket` stops
//! when its input ends but sends nothing for the subscriptions still open, so at shutdown
//! this module ends the input itself, sends `complete` for every operation it saw start and
//! has not seen complete, closes with 1001, and waits for the client's close reply before
//! dropping the TCP connection (closing with unread bytes would send a reset, which a client
//! sees as 1006). [`WsConnections::drain`] lets `run_until_stopped` wait for all of it.

use crate::api::AppState;
use crate::api::auth::{CLOSE_FORBIDDEN, client_ip, connection_caller};
use crate::api::graphql::{AppSchema, SourceIp};
use crate::api::raw_frames::RawFrames;
use crate::auth::{Accounts, Caller, KeyCaller};
use crate::config::Config;
use crate::error::AppError;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

mod connections;
mod operations;

pub(crate) use connections::client_key;
pub use connections::{WsConnections, WsPermit};
use operations::{Operations, refused_operation};

/// Close code of graphql-transport-ws for a client that did not send `connection_init` in
/// time.
pub const CLOSE_INIT_TIMEOUT: u16 = 4408;
/// Close code for a message over `WS_MAX_MESSAGE_BYTES` (RFC 6455 "message too big").
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for a peer that stopped answering pings (RFC 6455 "going away").
pub const CLOSE_IDLE: u16 = 1001;
/// Close code when the server shuts down (RFC 6455 "going away").
pub const CLOSE_SHUTDOWN: u16 = 1001;
/// How often an open connection asks whether its key still stands: a revoked key (or one whose
/// scopes changed) loses its sockets within this plus [`crate::auth::LIVE_KEYS_MAX_AGE`].
pub const KEY_RECHECK: Duration = Duration::from_secs(2);
/// How long the server waits for the client's answer to its close frame before dropping the
/// connection anyway: a client that is still there answers at once.
pub const CLOSE_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// `/graphql/ws`: subscriptions in `graphql-transport-ws` or the legacy `graphql-ws`.
///
/// Over a connection cap the upgrade is refused with the JSON error (429 for the client's own
/// cap, 503 for the process's); messages over `WS_MAX_MESSAGE_BYTES` close the socket with
/// 1009. The caller comes from the upgrade's `Authorization` header, if any, or from
/// `connection_init` (see [`connection_caller`]); a refused key closes graphql-transport-ws
/// with 4403 and answers the legacy protocol with `connection_error`.
pub async fn graphql_ws(
    State(state): State<AppState>,
    Extension(schema): Extension<AppSchema>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let caller = caller.map(|Extension(caller)| caller);
    let source = SourceIp(client_ip(
        &headers,
        peer.ip(),
        &state.config.trusted_proxy_headers,
    ));
    // Taken before the upgrade answer, so a shutdown that starts in between still waits for
    // this connection. Counted under the client's address: behind a trusted proxy every
    // connection comes from the proxy, and one client must not use up everyone's cap.
    let permit = match state.ws_connections.acquire(source.0) {
        Ok(permit) => permit,
        Err(refused) => return refused.into_response(),
    };
    let max = state.config.ws_max_message_bytes;
    // The connection outlives this request's task: its operations' error bodies quote the
    // upgrade's request id, and their spans belong to the upgrade's trace.
    let request_id = crate::error::request_id().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let traceparent = crate::telemetry::current_traceparent();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(max)
        .max_frame_size(max)
        // tungstenite reserves 128 KiB to read into per connection; a subscriber sends a few
        // small messages (init, subscribe, pong), so that was most of an idle connection's
        // memory (1,000 subscribers: 186 MB before any event). A larger message still
        // arrives whole: the buffer is the chunk read at a time, not a limit.
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| {
            let span = tracing::debug_span!("graphql.websocket", otel.kind = "server");
            crate::telemetry::continue_trace(&span, traceparent.as_deref());
            let session = serve_socket(state, schema, protocol, (caller, source), socket, permit);
            crate::error::with_request_id(request_id, crate::telemetry::in_span(span, session))
        })
}

/// The bytes a connection reads from its socket at a time.
const WS_READ_BUFFER: usize = 4 << 10;

/// What the server has heard from one WebSocket client.
struct ClientSignals {
    /// When the last frame (of any kind, pongs included) arrived, in ms since `since`.
    last_ms: AtomicU64,
    since: Instant,
    /// `connection_init` has arrived.
    initialised: AtomicBool,
    /// A message over the size limit was refused.
    too_big: AtomicBool,
}

impl ClientSignals {
    fn new() -> Self {
        Self {
            last_ms: AtomicU64::new(0),
            since: Instant::now(),
            initialised: AtomicBool::new(false),
            too_big: AtomicBool::new(false),
        }
    }

    /// Notes a message from the client; returns the answer to an operation it may not start
    /// (the message must then not reach async-graphql).
    fn note(
        &self,
        message: &Result<Message, axum::Error>,
        operations: &Operations,
    ) -> Option<Message> {
        let now = self.since.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
        match message {
            Ok(Message::Text(text)) => self.read(text.as_bytes(), operations),
            Ok(Message::Binary(data)) => self.read(data, operations),
            Ok(_) => None,
            Err(e) if is_too_big(e) => {
                self.too_big.store(true, Ordering::Relaxed);
                None
            }
            Err(_) => None,
        }
    }

    /// Notes `connection_init` (both protocols use the name) and the id of each operation
    /// started (`subscribe`, or `start` in the legacy protocol). Every operation counts against `WS_MAX_SUBSCRIPTIONS`, queries
    /// and mutations as much as subscriptions: one over it gets an error of its own and is
    /// never run.
    fn read(&self, data: &[u8], operations: &Operations) -> Option<Message> {
        #[derive(serde::Deserialize)]
        struct Envelope<'a> {
            #[serde(rename = "type", borrow)]
            kind: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            id: Option<std::borrow::Cow<'a, str>>,
        }
        let Ok(message) = serde_json::from_slice::<Envelope>(data) else {
            return None;
        };
        match (&*message.kind, message.id) {
            ("connection_init", _) => self.initialised.store(true, Ordering::Relaxed),
            (kind @ ("subscribe" | "start"), Some(id)) => {
                if let Err(refusal) = operations.started(&id) {
                    return Some(refused_operation(&id, kind == "start", &refusal));
                }
            }
            _ => {}
        }
        None
    }

    /// When the client was last heard from.
    fn last(&self) -> Instant {
        self.since + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// How a connection ends, from the server's side.
struct Ending {
    /// The close frame to send.
    frame: CloseFrame,
    /// Send `complete` for every operation still open first (at shutdown).
    complete_open: bool,
    /// Wait for the client's answer to the close frame; a client closed for silence will not
    /// give one.
    await_reply: bool,
}

impl Ending {
    /// A close frame alone, answered by a client that is still there.
    fn close(code: u16, reason: &'static str) -> Self {
        Self {
            frame: CloseFrame {
                code,
                reason: reason.into(),
            },
            complete_open: false,
            await_reply: true,
        }
    }
}

/// Whether a WebSocket read failed because a message or frame was over the size limit.
fn is_too_big(error: &axum::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|e| e.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}

/// Runs one WebSocket connection until it ends, or until shutdown's grace period is over.
async fn serve_socket(
    state: AppState,
    schema: AppSchema,
    protocol: GraphQLProtocol,
    caller: (Option<Caller>, SourceIp),
    socket: WebSocket,
    permit: WsPermit,
) {
    let abort = permit.abort();
    tokio::select! {
        () = run_socket(state, schema, protocol, caller, socket) => {}
        () = abort.cancelled() => {}
    }
    drop(permit);
}

/// One connection: a per-connection subscription count; on shutdown every open subscription
/// gets `complete` and the socket closes with 1001 "going away" instead of being cut. A client
/// that does not send `connection_init` within `WS_INIT_TIMEOUT_MS` is closed with 4408; one
/// that sends nothing, not even the pong to our pings, for `WS_IDLE_TIMEOUT_MS` is closed with
/// 1001; a message over the size limit closes with 1009.
async fn run_socket(
    state: AppState,
    schema: AppSchema,
    protocol: GraphQLProtocol,
    (caller, source): (Option<Caller>, SourceIp),
    socket: WebSocket,
) {
    let (to_client, mut from_client) = socket.split();
    // Set when `connection_init` is refused: async-graphql then closes graphql-transport-ws
    // with 1002, where the protocol asks for 4403 Forbidden.
    let refused = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::mpsc::channel::<Message>(32);
    let (end_tx, end_rx) = tokio::sync::oneshot::channel::<Ending>();
    let heard = Arc::new(ClientSignals::new());
    // The key `connection_init` was accepted with, which the connection must keep following.
    let key: Arc<Mutex<Option<KeyCaller>>> = Arc::default();
    let operations = Arc::new(Operations::new(state.config.ws_max_subscriptions));
    let raw = Arc::new(RawFrames::default());

    // The only writer: everything queued goes out in order, then (at shutdown) the
    // completions, then the close frame.
    let writer = write_socket(
        to_client,
        rx,
        end_rx,
        operations.clone(),
        refused.clone(),
        raw.clone(),
    );

    let session = async {
        let (pings, refusals) = (tx.clone(), tx.clone());
        let sink = tokio_util::sync::PollSender::new(tx)
            .sink_map_err(|_| axum::Error::new("the WebSocket writer stopped"));
        // Borrowed, not moved: after the session the read half waits for the close reply.
        let input = screened(
            &mut from_client,
            heard.clone(),
            operations.clone(),
            refusals,
        );
        let data = connection_data(state.config.ws_max_subscriptions, source, raw);
        let init_state = state.clone();
        let init_refused = refused.clone();
        let init_key = key.clone();
        let serve = GraphQLWebSocket::new_with_pair(sink, input, schema, protocol)
            .with_data(data)
            .on_connection_init(move |payload| {
                connection_init(init_state, caller, payload, init_key, init_refused)
            })
            .serve();
        let deadlines = socket_deadlines(&state.config);
        let supervise = supervise_socket(&heard, pings, deadlines, &state.accounts, &key);
        // Shutdown drops the GraphQL side at once, even while it waits on a slow client:
        // every subscription stream on the connection ends with it.
        let ending = tokio::select! {
            () = serve => None,
            ending = supervise => Some(ending),
            () = state.shutdown.cancelled() => Some(Ending {
                complete_open: true,
                ..Ending::close(CLOSE_SHUTDOWN, "server shutting down")
            }),
        };
        // The senders are dropped now, so the writer drains what was queued, then ends.
        let ending = ending.or_else(|| refusal_ending(&refused, &heard));
        let await_reply = ending.as_ref().is_none_or(|e| e.await_reply);
        if let Some(ending) = ending {
            let _ = end_tx.send(ending);
        }
        // Otherwise dropping the sender lets the writer close with the default 1001.
        await_reply
    };
    let ((), await_reply) = tokio::join!(writer, session);
    if await_reply {
        await_close_reply(&mut from_client).await;
    }
}

/// `WS_INIT_TIMEOUT_MS`, `WS_PING_INTERVAL_MS` and `WS_IDLE_TIMEOUT_MS`, as
/// [`supervise_socket`] takes them.
fn socket_deadlines(config: &Config) -> (Duration, Duration, Duration) {
    (
        config.ws_init_timeout,
        config.ws_ping_interval,
        config.ws_idle_timeout,
    )
}

/// The client's messages as async-graphql should see them: each is noted (liveness,
/// operations), and one the connection refuses is answered at once, never passed on.
fn screened<'a>(
    from_client: &'a mut SplitStream<WebSocket>,
    heard: Arc<ClientSignals>,
    operations: Arc<Operations>,
    refusals: tokio::sync::mpsc::Sender<Message>,
) -> impl futures::Stream<Item = Result<Message, axum::Error>> + Send + 'a {
    from_client.filter_map(move |message| {
        let refused = heard.note(&message, &operations);
        let refusals = refusals.clone();
        async move {
            let Some(answer) = refused else {
                return Some(message);
            };
            // A client that does not read its answers fills the queue; its operation is
            // refused all the same.
            let _ = refusals.try_send(answer);
            None
        }
    })
}

/// What every operation of one connection can reach: its subscription count, the client's
/// address and the pre-rendered frames the writer splices in.
fn connection_data(
    max_subscriptions: usize,
    source: SourceIp,
    raw: Arc<RawFrames>,
) -> async_graphql::Data {
    let mut data = async_graphql::Data::default();
    data.insert(crate::api::graphql::ConnectionSubscriptions::new(
        max_subscriptions,
    ));
    data.insert(source);
    data.insert(raw);
    data
}

/// Sends everything queued, in order; once the queue closes, `complete` for each operation
/// still open when the ending asks for it, then the close frame.
async fn write_socket(
    mut to_client: SplitSink<WebSocket, Message>,
    mut rx: tokio::sync::mpsc::Receiver<Message>,
    end_rx: tokio::sync::oneshot::Receiver<Ending>,
    operations: Arc<Operations>,
    refused: Arc<AtomicBool>,
    raw: Arc<RawFrames>,
) {
    while let Some(mut message) = rx.recv().await {
        operations.sent(&message);
        // Only now, so a queue of a slow socket holds placeholders, not events.
        message = raw.splice(message);
        if matches!(message, Message::Close(_)) && refused.load(Ordering::Relaxed) {
            message = Message::Close(Some(CloseFrame {
                code: CLOSE_FORBIDDEN,
                reason: "Forbidden".into(),
            }));
        }
        if to_client.send(message).await.is_err() {
            return;
        }
    }
    let ending = end_rx
        .await
        .unwrap_or_else(|_| Ending::close(CLOSE_SHUTDOWN, "connection finished"));
    if ending.complete_open {
        for id in operations.take() {
            let complete = serde_json::json!({"type": "complete", "id": id}).to_string();
            if to_client
                .send(Message::Text(complete.into()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
    let _ = to_client.send(Message::Close(Some(ending.frame))).await;
}

/// Answers `connection_init`: the caller it names (remembering an accepted key, which the
/// connection keeps following), or the refusal; an internal failure is logged, not shown.
async fn connection_init(
    state: AppState,
    caller: Option<Caller>,
    payload: serde_json::Value,
    key: Arc<Mutex<Option<KeyCaller>>>,
    refused: Arc<AtomicBool>,
) -> async_graphql::Result<async_graphql::Data> {
    match connection_caller(&state, caller, &payload).await {
        Ok(caller) => {
            if let Caller::Key(accepted) = &caller {
                *key.lock().unwrap_or_else(|e| e.into_inner()) = Some(accepted.clone());
            }
            let mut data = async_graphql::Data::default();
            data.insert(caller);
            Ok(data)
        }
        Err(AppError::Internal(e)) => {
            tracing::error!(
                error = format!("{e:#}"),
                "connection_init: cannot check the key"
            );
            Err(async_graphql::Error::new(
                "internal error; the cause has been logged",
            ))
        }
        Err(refusal) => {
            refused.store(true, Ordering::Relaxed);
            Err(async_graphql::Error::new(refusal.to_string()))
        }
    }
}

/// How to close a connection whose GraphQL side ended by itself: 4403 after a refused
/// `connection_init`, 1009 after a message over the limit, otherwise the writer's default.
fn refusal_ending(refused: &AtomicBool, heard: &ClientSignals) -> Option<Ending> {
    if refused.load(Ordering::Relaxed) {
        return Some(Ending::close(CLOSE_FORBIDDEN, "Forbidden"));
    }
    heard.too_big.load(Ordering::Relaxed).then(|| {
        Ending::close(
            CLOSE_TOO_BIG,
            "message larger than the limit (WS_MAX_MESSAGE_BYTES)",
        )
    })
}

/// Reads until the client answers the close frame (for at most [`CLOSE_REPLY_TIMEOUT`]):
/// dropping a connection with unread bytes makes the kernel send a reset, and the client may
/// lose our close frame to it.
async fn await_close_reply(from_client: &mut SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(CLOSE_REPLY_TIMEOUT, async {
        while let Some(Ok(message)) = from_client.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Pings the client, watches the deadlines (init, ping interval, idle) and the connection's
/// key; returns how to close when a deadline passes or the key no longer stands.
async fn supervise_socket(
    heard: &ClientSignals,
    pings: tokio::sync::mpsc::Sender<Message>,
    (init_timeout, ping_interval, idle_timeout): (Duration, Duration, Duration),
    accounts: &Accounts,
    key: &Mutex<Option<KeyCaller>>,
) -> Ending {
    let init_deadline = tokio::time::sleep(init_timeout);
    tokio::pin!(init_deadline);
    // A select's guard is read only when the loop turns, and a quiet connection may not turn
    // it before the deadline (the next turn can be the first ping): so the deadline itself
    // asks whether `connection_init` came, and is disarmed for good once it has.
    let mut init_pending = true;
    let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut recheck = tokio::time::interval_at(Instant::now() + KEY_RECHECK, KEY_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let idle_deadline = heard.last() + idle_timeout;
        tokio::select! {
            () = &mut init_deadline, if init_pending => {
                if !heard.initialised.load(Ordering::Relaxed) {
                    return Ending::close(CLOSE_INIT_TIMEOUT, "Connection initialisation timeout");
                }
                init_pending = false;
            }
            () = tokio::time::sleep_until(idle_deadline) => {
                if heard.last() + idle_timeout <= Instant::now() {
                    return Ending {
                        await_reply: false,
                        ..Ending::close(CLOSE_IDLE, "no answer to pings (WS_IDLE_TIMEOUT_MS)")
                    };
                }
            }
            _ = ping.tick() => {
                // A full queue means the client is not reading; the idle deadline decides.
                let _ = pings.try_send(Message::Ping(Bytes::new()));
            }
            _ = recheck.tick() => {
                let held = key.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let Some(held) = held else { continue };
                // Bounded, so a slow database cannot hold back the pings and deadlines.
                match tokio::time::timeout(KEY_RECHECK, accounts.still_valid(&held)).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => {
                        tracing::info!(
                            key_id = %held.key_id,
                            "closing a WebSocket: its key was revoked or its scopes changed"
                        );
                        return Ending::close(
                            CLOSE_FORBIDDEN,
                            "Forbidden: the key was revoked or its scopes changed",
                        );
                    }
                    // The database is away: the connection keeps what it had until it answers.
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot recheck a WebSocket's key"),
                    Err(_) => tracing::warn!("rechecking a WebSocket's key timed out"),
                }
            }
        }
    }
}
