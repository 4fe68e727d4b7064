//! The GraphQL-over-WebSocket client of the tests: `Ws`, its subprotocols, open, init, subscribe.

use super::*;

/// A WebSocket client connection to the app.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The two GraphQL-over-WebSocket subprotocols a client may speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws` (graphql-ws library, GraphiQL).
    TransportWs,
    /// The legacy `graphql-ws` (subscriptions-transport-ws).
    LegacyWs,
}

impl Protocol {
    /// The `Sec-WebSocket-Protocol` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::TransportWs => "graphql-transport-ws",
            Self::LegacyWs => "graphql-ws",
        }
    }

    /// The message type that starts an operation.
    pub fn start(self) -> &'static str {
        match self {
            Self::TransportWs => "subscribe",
            Self::LegacyWs => "start",
        }
    }

    /// The message type that carries an operation's result.
    pub fn next(self) -> &'static str {
        match self {
            Self::TransportWs => "next",
            Self::LegacyWs => "data",
        }
    }
}

/// Opens a WebSocket from the loopback address `from` to `base` + `path` (`base` is
/// `http://IP:PORT`, a test app's or a child's), asking for `protocol` and checking the server
/// chose it. Nothing is sent yet.
pub async fn ws_open(base: &str, path: &str, protocol: Protocol, from: [u8; 4]) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let mut request = format!("ws://{server}{path}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.name().parse().unwrap());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    let stream = socket.connect(server).await.unwrap();
    let (ws, response) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        protocol.name(),
        "the server speaks the requested subprotocol"
    );
    ws
}

/// Sends `connection_init` and waits (5 s at most) for `connection_ack`.
pub async fn ws_init(ws: &mut Ws) {
    let frame = ws_init_with(ws, serde_json::json!({}))
        .await
        .unwrap_or_else(|(code, reason)| panic!("closed after connection_init: {code} {reason}"));
    assert_eq!(frame["type"], "connection_ack", "{frame}");
}

/// Sends `connection_init` with `payload`; returns the first text frame, or the close frame's
/// code and reason.
pub async fn ws_init_with(ws: &mut Ws, payload: Value) -> Result<Value, (u16, String)> {
    use tokio_tungstenite::tungstenite::Message;
    let init = serde_json::json!({"type": "connection_init", "payload": payload});
    ws.send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("an answer to connection_init within 5 s")
            .expect("an answer before the stream ends")
            .unwrap();
        match message {
            Message::Text(text) => return Ok(serde_json::from_str(&text).unwrap()),
            Message::Close(Some(frame)) => {
                return Err((frame.code.into(), frame.reason.to_string()));
            }
            Message::Close(None) => return Err((1005, String::new())),
            _ => {}
        }
    }
}

/// A GraphQL WebSocket at `base` + `path` in `protocol`, initialised and acknowledged, so it
/// is ready for a subscription.
pub async fn ws_connect(base: &str, path: &str, protocol: Protocol) -> Ws {
    let mut ws = ws_open(base, path, protocol, [127, 0, 0, 1]).await;
    ws_init(&mut ws).await;
    ws
}

/// Starts operation `id` (`query` with `variables`) on an initialised socket.
pub async fn ws_subscribe(
    ws: &mut Ws,
    protocol: Protocol,
    id: &str,
    query: &str,
    variables: Value,
) {
    let start = serde_json::json!({
        "id": id,
        "type": protocol.start(),
        "payload": {"query": query, "variables": variables},
    });
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        start.to_string().into(),
    ))
    .await
    .unwrap();
}
