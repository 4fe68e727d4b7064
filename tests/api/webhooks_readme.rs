//! The README's webhook receiver, written with Python's standard library, run as printed:
//! it accepts what the service sends when a job ends, and refuses a request whose signature
//! is wrong, so the example a reader copies really verifies.

use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, TestApp};
use serde_json::json;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A key for `WEBHOOK_SECRET_KEY` (32 bytes in base64).
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The first Python block after the README's "## Webhooks".
fn readme_receiver() -> String {
    let readme =
        std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let section = &readme[readme.find("## Webhooks").unwrap()..];
    let start = section.find("```python\n").unwrap() + "```python\n".len();
    section[start..start + section[start..].find("```").unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_receiver_verifies_what_the_service_sends() {
    let mut sites = Sites::default();
    sites.icon_site("one.test");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(Backend::Sqlite, &internet, &[("WEBHOOK_SECRET_KEY", KEY)]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (status, hook) = app
        .post_json(
            "/webhooks",
            &json!({"client_id": "readme", "url": format!("http://127.0.0.1:{port}/hook")}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap();

    let code = readme_receiver();
    assert!(code.contains("SECRET = \"whsec_…\""), "{code}");
    assert!(code.contains("(\"0.0.0.0\", 8000)"), "{code}");
    let code = code
        .replace("SECRET = \"whsec_…\"", &format!("SECRET = {secret:?}"))
        .replace("(\"0.0.0.0\", 8000)", &format!("(\"127.0.0.1\", {port})"));
    let mut python = tokio::process::Command::new("python3")
        .args(["-u", "-c", &code])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut printed = BufReader::new(python.stdout.take().unwrap()).lines();
    let http = reqwest::Client::new();
    // Wall-clock: the receiver is another process that must start listening.
    let hook_url = format!("http://127.0.0.1:{port}/hook");
    let mut listening = false;
    for _ in 0..100 {
        let forged = http
            .post(&hook_url)
            .header("webhook-id", "msg_forged")
            .header(
                "webhook-timestamp",
                chrono::Utc::now().timestamp().to_string(),
            )
            .header(
                "webhook-signature",
                "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            )
            .body("{}")
            .send()
            .await;
        if let Ok(answer) = forged {
            assert_eq!(answer.status(), 401, "a forged signature must be refused");
            listening = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listening, "the README's receiver never listened");

    let job_id = app.create_job("readme", &["one.test"]).await;
    app.wait_for_job(&job_id, Duration::from_secs(30)).await;
    let line = tokio::time::timeout(Duration::from_secs(10), printed.next_line())
        .await
        .expect("the receiver printed the event within 10 s")
        .unwrap()
        .unwrap();
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(words[0], "job.completed", "{line}");
    assert_eq!(words[1], job_id, "{line}");
    assert!(
        words[2].starts_with(&format!("/jobs/{job_id}/download?")),
        "{line}"
    );

    // The receiver prints before it answers, and the service records the attempt after the
    // answer: the delivery is delivered a moment after the line.
    let id = hook["id"].as_str().unwrap();
    let mut listed = json!(null);
    for _ in 0..100 {
        listed = app.get_json(&format!("/webhooks/{id}/deliveries")).await.1;
        if listed["deliveries"][0]["status"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivery = &listed["deliveries"][0];
    assert_eq!(delivery["status"], "delivered", "{listed}");
    assert_eq!(delivery["last_status_code"], 204, "{listed}");
}
