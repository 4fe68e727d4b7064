//! A small Chrome DevTools Protocol client: starts headless Chromium, opens one page and
//! drives it over the browser's WebSocket (tokio-tungstenite, already a dev-dependency), in
//! flattened-session mode. Every request the page makes is logged; requests to any origin
//! but the app's are failed and remembered, so a test can both cut the page off from the
//! internet and prove it never tried to reach it.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Where Debian's `chromium` package puts the browser; `CHROMIUM` overrides.
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

static SKIP_NOTICE: Once = Once::new();

/// The browser binary, or None (with one notice per run) when it is missing. Under
/// `CI=true` a missing browser fails the test: CI must never be green over skipped tests.
pub fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| DEFAULT_CHROMIUM.into()));
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but no browser at {} (install Debian's chromium)",
            path.display()
        );
    }
    SKIP_NOTICE.call_once(|| {
        eprintln!(
            "skipped: the browser tests need Chromium at {} (apt-get install chromium, or set CHROMIUM)",
            path.display()
        );
    });
    None
}

/// One request the page sent, from `Network.requestWillBeSent`.
#[derive(Clone, Debug)]
pub struct Request {
    /// Its URL.
    pub url: String,
    /// Its body, when it had one.
    pub body: Option<String>,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// What the reader task records from events.
#[derive(Default)]
struct Log {
    requests: Vec<Request>,
    blocked: Vec<String>,
    websockets: Vec<String>,
    ws_sent: Vec<String>,
    ws_received: Vec<String>,
    console_errors: Vec<String>,
}

/// A headless Chromium with one page attached.
pub struct Browser {
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicU64,
    session: String,
    log: Arc<Mutex<Log>>,
}

impl Browser {
    /// Starts the browser at `binary` with a fresh profile and opens a blank page; requests
    /// outside `allowed_origin` (scheme://host:port) are failed.
    pub async fn launch(binary: &Path, allowed_origin: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        // The browser says where its DevTools listen on stderr.
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let ws_url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("chromium exited without a DevTools address");
        })
        .await
        .expect("chromium prints its DevTools address");
        // Keep draining stderr so the browser never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (socket, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .unwrap();
        let (mut sink, mut stream) = socket.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let log: Arc<Mutex<Log>> = Arc::default();
        let allowed = allowed_origin.to_owned();
        {
            let pending = pending.clone();
            let log = log.clone();
            let out = out.clone();
            tokio::spawn(async move {
                while let Some(Ok(message)) = stream.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if std::env::var("CDP_DEBUG").is_ok() {
                        eprintln!("cdp <- {}", &text[..text.len().min(300)]);
                    }
                    if let Some(id) = value["id"].as_u64() {
                        if let Some(reply) = pending.lock().unwrap().remove(&id) {
                            let result = match value.get("error") {
                                Some(e) => Err(e.to_string()),
                                None => Ok(value["result"].clone()),
                            };
                            let _ = reply.send(result);
                        }
                        continue;
                    }
                    on_event(&value, &log, &out, &allowed);
                }
            });
        }
        let mut browser = Self {
            child,
            _profile: profile,
            out,
            pending,
            next_id: AtomicU64::new(1),
            session: String::new(),
            log,
        };
        let target = browser
            .browser_call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = browser
            .browser_call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Page.enable", "Network.enable", "Runtime.enable"] {
            browser.call(domain, json!({})).await;
        }
        // Every request pauses here first; the reader task lets the app's through.
        browser
            .call(
                "Fetch.enable",
                json!({"patterns": [{"urlPattern": "*", "requestStage": "Request"}]}),
            )
            .await;
        browser
    }

    async fn send(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.out
            .send(Message::Text(message.to_string().into()))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer in 60 s"))
            .unwrap()
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// A command to the browser itself.
    pub async fn browser_call(&self, method: &str, params: Value) -> Value {
        self.send(None, method, params).await
    }

    /// A command to the page.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.send(Some(&self.session.clone()), method, params).await
    }

    /// Evaluates `expression` in the page (awaiting a promise); its value as JSON.
    pub async fn eval(&self, expression: &str) -> Value {
        let answer = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("{expression}\nthrew: {exception}");
        }
        answer["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy; panics with `what` after `within`.
    pub async fn wait_for(&self, expression: &str, within: Duration, what: &str) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        // An element cannot come back by value: it counts as `true`.
        let wrapped = format!(
            "(() => {{ const v = ({expression}); return v instanceof Node ? true : v; }})()"
        );
        loop {
            let value = self.eval(&wrapped).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what} ({expression})");
            }
            // Wall-clock: the condition is judged in the browser, another process.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens `url` and waits for its document to load.
    pub async fn goto(&self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for(
            &format!(
                "location.href.startsWith({:?}) && document.readyState === 'complete'",
                url.split('#').next().unwrap()
            ),
            Duration::from_secs(20),
            "the page to load",
        )
        .await;
    }

    /// Sets the viewport's size in CSS pixels.
    pub async fn viewport(&self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
        )
        .await;
    }

    /// Chooses `file` in the `<input type=file>` matching `selector`.
    pub async fn choose_file(&self, selector: &str, file: &Path) {
        let document = self.call("DOM.getDocument", json!({})).await;
        let node = self
            .call(
                "DOM.querySelector",
                json!({"nodeId": document["root"]["nodeId"], "selector": selector}),
            )
            .await;
        self.call(
            "DOM.setFileInputFiles",
            json!({"nodeId": node["nodeId"], "files": [file.display().to_string()]}),
        )
        .await;
    }

    /// Writes a PNG of the page to `path` when `UPDATE_SCREENSHOTS=1`.
    pub async fn screenshot(&self, path: &str) {
        if std::env::var("UPDATE_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        use base64::Engine;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, bytes).unwrap();
    }

    /// Every request the page sent so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().requests.clone()
    }

    /// URLs outside the app's origin the page tried (and was refused).
    pub fn blocked(&self) -> Vec<String> {
        self.log.lock().unwrap().blocked.clone()
    }

    /// WebSockets the page opened.
    pub fn websockets(&self) -> Vec<String> {
        self.log.lock().unwrap().websockets.clone()
    }

    /// The text of every WebSocket message the page sent, in order.
    pub fn ws_sent(&self) -> Vec<String> {
        self.log.lock().unwrap().ws_sent.clone()
    }

    /// The text of every WebSocket message the page received, in order.
    pub fn ws_received(&self) -> Vec<String> {
        self.log.lock().unwrap().ws_received.clone()
    }

    /// Uncaught exceptions and console errors.
    pub fn console_errors(&self) -> Vec<String> {
        self.log.lock().unwrap().console_errors.clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn on_event(value: &Value, log: &Mutex<Log>, out: &mpsc::UnboundedSender<Message>, allowed: &str) {
    let params = &value["params"];
    match value["method"].as_str().unwrap_or_default() {
        "Fetch.requestPaused" => {
            let url = params["request"]["url"].as_str().unwrap_or_default();
            let ours = url.starts_with(allowed) || url.starts_with("data:");
            let (method, extra) = if ours {
                ("Fetch.continueRequest", json!({}))
            } else {
                log.lock().unwrap().blocked.push(url.to_owned());
                (
                    "Fetch.failRequest",
                    json!({"errorReason": "BlockedByClient"}),
                )
            };
            let mut command = json!({
                // Replies to these are not awaited; ids far above the command counter, within
                // the 32-bit integers the protocol accepts.
                "id": 1_000_000_000 + rand_id(),
                "method": method,
                "params": {"requestId": params["requestId"]},
                "sessionId": value["sessionId"],
            });
            if let (Some(p), Some(e)) = (command["params"].as_object_mut(), extra.as_object()) {
                p.extend(e.clone());
            }
            let _ = out.send(Message::Text(command.to_string().into()));
        }
        "Network.requestWillBeSent" => {
            let request = &params["request"];
            log.lock().unwrap().requests.push(Request {
                url: request["url"].as_str().unwrap_or_default().to_owned(),
                body: request["postData"].as_str().map(str::to_owned),
            });
        }
        "Network.webSocketCreated" => {
            let url = params["url"].as_str().unwrap_or_default().to_owned();
            log.lock().unwrap().websockets.push(url);
        }
        "Network.webSocketFrameSent" => {
            let text = params["response"]["payloadData"]
                .as_str()
                .unwrap_or_default();
            log.lock().unwrap().ws_sent.push(text.to_owned());
        }
        "Network.webSocketFrameReceived" => {
            let text = params["response"]["payloadData"]
                .as_str()
                .unwrap_or_default();
            log.lock().unwrap().ws_received.push(text.to_owned());
        }
        "Runtime.exceptionThrown" => {
            log.lock()
                .unwrap()
                .console_errors
                .push(params["exceptionDetails"].to_string());
        }
        "Runtime.consoleAPICalled" if params["type"] == "error" => {
            log.lock()
                .unwrap()
                .console_errors
                .push(params["args"].to_string());
        }
        _ => {}
    }
}

fn rand_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
