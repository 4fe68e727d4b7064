//! A new user's first start, as the README tells it: `cp .env.template .env`, then run the
//! binary in that directory. The real binary reads the template with its own loader, on the
//! SQLite default it names, and its `/readyz` answer is the one the README shows.

use crate::helpers::{ChildGuard, listening_addr};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The line the README shows right after its `curl -s localhost:3000/readyz`.
fn readme_readyz_example() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut lines = readme.lines();
    lines
        .find(|line| {
            line.trim_start()
                .starts_with("curl -s localhost:3000/readyz")
        })
        .expect("the README shows a /readyz call");
    lines.next().expect("and its answer").trim().to_owned()
}

#[tokio::test]
async fn the_template_as_dotenv_starts_the_service() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/.env.template"),
        dir.path().join(".env"),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_favicon-finder"));
    command.current_dir(dir.path()).env_clear();
    for key in ["PATH", "HOME"] {
        if let Ok(value) = std::env::var(key) {
            command.env(key, value);
        }
    }
    // Only the port differs from the template (the environment wins over `.env`), so tests
    // in parallel never collide; the child reports the port it got.
    command
        .env("PORT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = ChildGuard(command.spawn().expect("the binary starts"));
    let addr = listening_addr(child.0.stderr.take().unwrap());
    assert!(addr.ip().is_loopback(), "the template's HOST: {addr}");

    let http = reqwest::Client::new();
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let text = ready.text().await.unwrap();
    assert_eq!(
        text,
        readme_readyz_example(),
        "the README's /readyz example is not what the embedded default answers"
    );
    assert!(
        dir.path().join("favicon-finder.db").exists(),
        "the template's SQLite default, created in the working directory"
    );

    child.terminate();
    let status = child.exited(Duration::from_secs(20)).await;
    assert!(status.success(), "a clean stop: {status}");
}
