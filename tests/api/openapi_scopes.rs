//! The REST contract under keys: every operation called with no key, an unknown key, a key
//! of each scope, another client's key and a refused `Host`, with every answer (401 and 403
//! among them) checked against openapi.json: its status listed for that operation, its body
//! the documented error shape.

use crate::accounts::create_key;
use crate::helpers::TestApp;
use crate::openapi::{As, Contract};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Mutex;

/// The admin key made at start, as a Secret would bring it.
const ADMIN: &str = "ffk_contract-admin-key-0123456789abcdefghij";

#[tokio::test]
async fn every_scope_answers_as_documented() {
    let app = TestApp::api_only(&[
        ("AUTH_MODE", "required"),
        ("ICONS_PUBLIC", "false"),
        ("BOOTSTRAP_API_KEY", ADMIN),
        ("WEBHOOK_SECRET_KEY", crate::webhooks_api::SEALING_KEY),
    ])
    .await;
    let contract = Contract {
        document: serde_json::from_str(&favicon_finder::api::openapi::json()).unwrap(),
        called: Mutex::default(),
    };
    let (_, submit) = create_key(&app, "acme", &["submit"]).await;
    let (_, read) = create_key(&app, "acme", &["read"]).await;
    let (_, rival) = create_key(&app, "rival", &["submit", "read"]).await;
    let (status, created) = contract
        .call_as(
            &app,
            As {
                key: Some(&submit),
                host: None,
            },
            "post",
            "/jobs",
            "/jobs",
            Some(json!({"domains": ["a.example"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let job = format!("/jobs/{}", created["job_id"].as_str().unwrap());
    let submitter = As {
        key: Some(&submit),
        host: None,
    };
    let (status, hook) = contract
        .call_as(
            &app,
            submitter,
            "post",
            "/webhooks",
            "/webhooks",
            Some(json!({"url": "http://127.0.0.1:9/hook"})),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let hook = format!("/webhooks/{}", hook["id"].as_str().unwrap());
    let (status, queued) = contract
        .call_as(
            &app,
            submitter,
            "post",
            "/webhooks/{id}/test",
            &format!("{hook}/test"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    let redeliver = format!(
        "/webhooks/deliveries/{}/redeliver",
        queued["id"].as_str().unwrap()
    );

    let calls: Vec<(&str, &str, String, Option<Value>)> = vec![
        (
            "post",
            "/jobs",
            "/jobs".into(),
            Some(json!({"client_id": "acme", "domains": ["b.example"]})),
        ),
        ("get", "/jobs/{id}", job.clone(), None),
        ("get", "/jobs/{id}/results", format!("{job}/results"), None),
        (
            "get",
            "/jobs/{id}/download",
            format!("{job}/download"),
            None,
        ),
        (
            "post",
            "/jobs/{id}/cancel",
            format!("{job}/cancel"),
            Some(json!({})),
        ),
        ("get", "/icons/{domain}", "/icons/a.example".into(), None),
        ("get", "/metrics", "/metrics".into(), None),
        ("get", "/healthz", "/healthz".into(), None),
        ("get", "/readyz", "/readyz".into(), None),
        (
            "post",
            "/webhooks",
            "/webhooks".into(),
            Some(json!({"url": "http://127.0.0.1:9/other", "client_id": "acme"})),
        ),
        ("get", "/webhooks", "/webhooks".into(), None),
        ("get", "/webhooks/{id}", hook.clone(), None),
        (
            "post",
            "/webhooks/{id}/rotate-secret",
            format!("{hook}/rotate-secret"),
            Some(json!({})),
        ),
        (
            "post",
            "/webhooks/{id}/enable",
            format!("{hook}/enable"),
            Some(json!({})),
        ),
        (
            "post",
            "/webhooks/{id}/test",
            format!("{hook}/test"),
            Some(json!({})),
        ),
        (
            "get",
            "/webhooks/{id}/deliveries",
            format!("{hook}/deliveries"),
            None,
        ),
        (
            "post",
            "/webhooks/deliveries/{id}/redeliver",
            redeliver.clone(),
            Some(json!({})),
        ),
        ("delete", "/webhooks/{id}", hook.clone(), None),
        ("delete", "/jobs/{id}", job.clone(), None),
    ];
    let unknown = "ffk_unknown-key-0123456789abcdefghijklmnop";
    // The read key goes before the submit key, which may delete the job the others read.
    let callers = [
        ("no key", None),
        ("an unknown key", Some(unknown)),
        ("read", Some(read.as_str())),
        ("another client's", Some(rival.as_str())),
        ("submit", Some(submit.as_str())),
        ("admin", Some(ADMIN)),
    ];
    let mut seen = BTreeSet::new();
    for (caller, key) in callers {
        for (method, template, url, body) in &calls {
            let who = As { key, host: None };
            let (status, answer) = contract
                .call_as(&app, who, method, template, url, body.clone())
                .await;
            if status == 401 || status == 403 {
                assert!(
                    answer["error"]["code"].is_string(),
                    "{caller}: {method} {url} {status}: {answer}"
                );
                seen.insert(format!("{status} {method} {template}"));
            }
        }
    }
    // A Host this service does not answer to is refused everywhere, keys or not.
    for (method, template, url, body) in &calls {
        let who = As {
            key: Some(ADMIN),
            host: Some("rebound.example"),
        };
        let (status, answer) = contract
            .call_as(&app, who, method, template, url, body.clone())
            .await;
        assert_eq!(status, 403, "{method} {url} under a foreign Host: {answer}");
    }

    // The refusals the binary gives did happen, so the checks above judged them.
    for operation in [
        "post /jobs",
        "get /jobs/{id}",
        "get /jobs/{id}/results",
        "post /jobs/{id}/cancel",
        "delete /jobs/{id}",
        "get /icons/{domain}",
        "post /webhooks",
        "get /webhooks/{id}",
        "post /webhooks/{id}/rotate-secret",
        "get /webhooks/{id}/deliveries",
        "delete /webhooks/{id}",
    ] {
        assert!(
            seen.contains(&format!("401 {operation}"))
                && seen.contains(&format!("403 {operation}")),
            "{operation}: a 401 and a 403 by scope were expected, saw {seen:?}"
        );
    }
}
