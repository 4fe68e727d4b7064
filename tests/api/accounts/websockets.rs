//! WebSockets at the door: opening one with an `Origin` and a key, and the checks of both.

use super::*;

/// Opens a GraphQL WebSocket with optional `Origin` and `Authorization` headers; the
/// upgrade's HTTP status when refused.
pub(crate) async fn ws_open(
    app: &TestApp,
    protocol: &str,
    origin: Option<&str>,
    key: Option<&str>,
) -> Result<crate::helpers::Ws, u16> {
    let bearer = key.map(|key| format!("Bearer {key}"));
    let mut headers = vec![];
    headers.extend(origin.map(|origin| ("origin", origin)));
    headers.extend(bearer.as_deref().map(|bearer| ("authorization", bearer)));
    ws_open_with(app, protocol, &headers).await
}

/// Opens a GraphQL WebSocket with these request headers besides the handshake's; the
/// upgrade's HTTP status when refused.
pub(crate) async fn ws_open_with(
    app: &TestApp,
    protocol: &str,
    extra: &[(&str, &str)],
) -> Result<crate::helpers::Ws, u16> {
    let url = format!("{}/graphql/ws", app.base.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("sec-websocket-protocol", protocol.parse().unwrap());
    for (name, value) in extra {
        headers.insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("{e}"),
    }
}

/// WebSockets: a refused origin gets 403 at the upgrade; in required mode the key comes in
/// `connection_init` (either form) or the header, and a missing or bad one closes with 4403
/// (graphql-transport-ws) or answers `connection_error` (graphql-ws).
#[tokio::test]
async fn websockets_check_origin_and_key() {
    let app = required_app(
        Backend::Sqlite,
        &[("CORS_ALLOWED_ORIGINS", "https://app.example.test")],
    )
    .await;
    let refused = ws_open(
        &app,
        "graphql-transport-ws",
        Some("https://evil.example.test"),
        None,
    )
    .await;
    assert_eq!(refused.err(), Some(403));
    let bad_header = ws_open(&app, "graphql-transport-ws", None, Some("ffk_nope")).await;
    assert_eq!(bad_header.err(), Some(401));

    let allowed = Some("https://app.example.test");
    for payload in [
        json!({"Authorization": format!("Bearer {BOOTSTRAP}")}),
        json!({"apiKey": BOOTSTRAP}),
    ] {
        let mut ws = ws_open(&app, "graphql-transport-ws", allowed, None)
            .await
            .unwrap();
        let answer = ws_init_with(&mut ws, payload.clone()).await.unwrap();
        assert_eq!(answer["type"], "connection_ack", "{payload}: {answer}");
    }
    let mut ws = ws_open(&app, "graphql-transport-ws", None, Some(BOOTSTRAP))
        .await
        .unwrap();
    assert_eq!(
        ws_init_with(&mut ws, json!({})).await.unwrap()["type"],
        "connection_ack"
    );

    for payload in [json!({}), json!({"apiKey": "ffk_nope"})] {
        let mut ws = ws_open(&app, "graphql-transport-ws", None, None)
            .await
            .unwrap();
        let (code, reason) = ws_init_with(&mut ws, payload.clone()).await.unwrap_err();
        assert_eq!((code, reason.as_str()), (4403, "Forbidden"), "{payload}");
        let mut legacy = ws_open(&app, "graphql-ws", None, None).await.unwrap();
        let answer = ws_init_with(&mut legacy, payload.clone()).await.unwrap();
        assert_eq!(answer["type"], "connection_error", "{payload}: {answer}");
        assert!(!answer.to_string().contains("ffk_nope"), "{answer}");
    }
}
