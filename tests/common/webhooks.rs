//! A webhook endpoint for the tests: tests/js/webhook-receiver.mjs, which checks every request
//! with the npm `standardwebhooks` library as a real consumer would, driven from here.
//!
//! Each configured secret is tried on its own and a delivery records the indices of those that
//! verified it, so a test asserts `verified_with == [0]` rather than "it passed": a wrong or
//! rotated-out secret shows as an absent index, never as a pass. Like the other tests that
//! drive node, the receiver is missing (and the test skipped, or failed under
//! `REQUIRE_SERVICES=1`) when node or `tests/js/node_modules` is.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;

/// One request the receiver read, as it saw it.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The request's path and query (`/hook` unless the registered URL said otherwise).
    pub path: String,
    /// The request method; anything but POST was answered 405.
    pub method: String,
    /// Every request header, names lower-cased (`webhook-id`, `content-type`, …).
    pub headers: HashMap<String, String>,
    /// The body parsed as JSON, or `Value::Null` when it is not JSON.
    pub body: Value,
    /// The body exactly as sent (read as UTF-8, lossily).
    pub raw_body: String,
    /// Indices into the secrets configured when it arrived of those that verified it.
    pub verified_with: Vec<usize>,
    /// Why each other secret did not (`"1: No matching signature found"`), for messages.
    pub verify_errors: Vec<String>,
    /// The status the receiver chose for it (sent after any delay).
    pub status: u16,
    /// When its body had been read.
    pub received_at: SystemTime,
}

impl Delivery {
    /// The header `name` (lower-case), or "" when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// What the reader task saw: deliveries, settings acknowledged, and the end of the output.
#[derive(Default)]
struct Seen {
    deliveries: Vec<Delivery>,
    /// Settings lines acknowledged so far (the receiver counts them from 1).
    configured: u64,
    /// The receiver's stdout ended (it exited or crashed).
    closed: bool,
}

/// A running receiver; the node process is killed when this is dropped.
pub struct Receiver {
    port: u16,
    /// The settings channel and the lines sent on it; a lock so that concurrent callers'
    /// lines never interleave and each waits for its own acknowledgement.
    stdin: tokio::sync::Mutex<(ChildStdin, u64)>,
    seen: Arc<Mutex<Seen>>,
    /// Bumped on every line read, so waiters wake without polling.
    changed: watch::Receiver<()>,
    /// The receiver's stderr so far, for failure messages.
    stderr: Arc<Mutex<String>>,
    /// Held only to be killed on drop (`kill_on_drop`).
    _child: Child,
}

impl Receiver {
    /// Starts a receiver trying each of `secrets` (`whsec_…`) on every request and answering
    /// the first requests with `statuses` in turn, then 204. `None` when node or tests/js is
    /// not installed (the caller returns: the test is skipped; under `REQUIRE_SERVICES=1`
    /// this panics instead).
    pub async fn start(secrets: &[&str], statuses: &[u16]) -> Option<Self> {
        let js = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js");
        let installed = std::path::Path::new(js)
            .join("node_modules/standardwebhooks")
            .is_dir();
        if !crate::services::available(
            "node with tests/js installed (npm ci --prefix tests/js)",
            crate::services::on_path("node") && installed,
        ) {
            return None;
        }
        let mut child = Command::new("node")
            .arg(format!("{js}/webhook-receiver.mjs"))
            .arg(json!(secrets).to_string())
            .arg(json!(statuses).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let stderr = Arc::new(Mutex::new(String::new()));
        tokio::spawn(collect(child.stderr.take().unwrap(), stderr.clone()));
        let mut first = String::new();
        let read = tokio::time::timeout(Duration::from_secs(20), stdout.read_line(&mut first));
        let port = match read.await {
            Ok(Ok(_)) => serde_json::from_str::<Value>(&first)
                .ok()
                .and_then(|line| line["listening"].as_u64()),
            _ => None,
        };
        let Some(port) = port else {
            panic!(
                "the webhook receiver did not start: {first:?}\n{}",
                stderr.lock().unwrap()
            );
        };
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (tx, changed) = watch::channel(());
        tokio::spawn(read_lines(stdout, seen.clone(), tx));
        Some(Self {
            port: u16::try_from(port).unwrap(),
            stdin: tokio::sync::Mutex::new((child.stdin.take().unwrap(), 0)),
            seen,
            changed,
            stderr,
            _child: child,
        })
    }

    /// Where to register the webhook: `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Replaces the secrets tried on each request (indices in `verified_with` then refer to
    /// this list); requests read after this returns use them.
    pub async fn set_secrets(&self, secrets: &[&str]) {
        self.configure(json!({ "secrets": secrets })).await;
    }

    /// Replaces the statuses still to answer in turn (204 after them); requests read after
    /// this returns use them.
    pub async fn set_statuses(&self, statuses: &[u16]) {
        self.configure(json!({ "statuses": statuses })).await;
    }

    /// Holds each answer this long after its request is read (the delivery is recorded at
    /// once), to drive the sender's timeout.
    pub async fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap();
        self.configure(json!({ "delay_ms": ms })).await;
    }

    /// Sends one settings line and waits for the receiver to acknowledge it, so the test's
    /// next step cannot race the change.
    async fn configure(&self, change: Value) {
        let mut stdin = self.stdin.lock().await;
        let line = format!("{change}\n");
        stdin.0.write_all(line.as_bytes()).await.unwrap();
        stdin.0.flush().await.unwrap();
        stdin.1 += 1;
        let want = stdin.1;
        self.wait_until(Duration::from_secs(10), |seen| seen.configured >= want)
            .await
            .unwrap_or_else(|| panic!("the receiver did not acknowledge {change}"));
    }

    /// Every request read so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().deliveries.clone()
    }

    /// Waits until at least `n` requests have been read and returns them all; panics after
    /// `timeout` naming what did arrive.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        if self
            .wait_until(timeout, |seen| seen.deliveries.len() >= n)
            .await
            .is_none()
        {
            let seen = self.deliveries();
            panic!(
                "waited {timeout:?} for {n} webhook deliveries, got {}: {seen:#?}\nstderr: {}",
                seen.len(),
                self.stderr.lock().unwrap()
            );
        }
        self.deliveries()
    }

    /// `Some(())` once `done` holds, `None` after `timeout` or when the receiver has exited.
    async fn wait_until(&self, timeout: Duration, done: impl Fn(&Seen) -> bool) -> Option<()> {
        let mut changed = self.changed.clone();
        let wait = async {
            loop {
                // Marked seen before looking, so a line read after the look wakes the wait.
                changed.borrow_and_update();
                {
                    let seen = self.seen.lock().unwrap();
                    if done(&seen) {
                        return Some(());
                    }
                    if seen.closed {
                        return None;
                    }
                }
                changed.changed().await.ok()?;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }
}

/// Parses the receiver's output lines into `seen` until it ends, waking waiters on each.
async fn read_lines(stdout: BufReader<ChildStdout>, seen: Arc<Mutex<Seen>>, tx: watch::Sender<()>) {
    let mut lines = stdout.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the receiver printed {line:?}: {e}"));
        {
            let mut seen = seen.lock().unwrap();
            if let Some(k) = value["configured"].as_u64() {
                seen.configured = k;
            } else {
                let request: Line = serde_json::from_value(value)
                    .unwrap_or_else(|e| panic!("the receiver printed {line:?}: {e}"));
                seen.deliveries.push(request.into());
            }
        }
        tx.send_replace(());
    }
    seen.lock().unwrap().closed = true;
    tx.send_replace(());
}

/// A request's output line, as webhook-receiver.mjs prints it.
#[derive(serde::Deserialize)]
struct Line {
    path: String,
    method: String,
    headers: HashMap<String, String>,
    body: String,
    verified_with: Vec<usize>,
    verify_errors: Vec<String>,
    status_answered: u16,
    received_at_ms: u64,
}

impl From<Line> for Delivery {
    fn from(line: Line) -> Self {
        Self {
            path: line.path,
            method: line.method,
            headers: line.headers,
            body: serde_json::from_str(&line.body).unwrap_or(Value::Null),
            raw_body: line.body,
            verified_with: line.verified_with,
            verify_errors: line.verify_errors,
            status: line.status_answered,
            received_at: SystemTime::UNIX_EPOCH + Duration::from_millis(line.received_at_ms),
        }
    }
}

/// Appends everything `stderr` says to `into`.
async fn collect(mut stderr: tokio::process::ChildStderr, into: Arc<Mutex<String>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        into.lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}
