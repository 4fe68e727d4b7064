//! The Kubernetes ConfigMap (`deploy/k8s/configmap.yaml`) runs the product it ships with: the
//! app started with its data serves the dashboard's own GraphQL operations (read from
//! `assets/js/`, so they cannot drift from what the browser sends) and the largest job its
//! `MAX_DOMAINS_PER_JOB` allows.

use crate::helpers::{Backend, TestApp};
use serde_json::{Value, json};
use std::time::Duration;

/// The admin key the Secret would bring (`BOOTSTRAP_API_KEY`), since the ConfigMap requires keys.
const KEY: &str = "ffk_configmap-test-key-0123456789abcdefghijkl";

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The ConfigMap's `data`: every `KEY: "value"` line of the mapping, in order.
fn configmap() -> Vec<(String, String)> {
    let text = read("deploy/k8s/configmap.yaml");
    let (_, data) = text.split_once("\ndata:\n").expect("a data section");
    let mut vars = Vec::new();
    for line in data.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some(entry) = line.strip_prefix("  ") else {
            break;
        };
        let (key, value) = entry
            .split_once(": ")
            .unwrap_or_else(|| panic!("not `KEY: \"value\"`: {line}"));
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("a ConfigMap value is a quoted string: {line}"));
        vars.push((key.to_owned(), value.to_owned()));
    }
    vars
}

/// The text after `marker` in `text`, up to `end`.
fn between<'a>(text: &'a str, marker: &str, end: char) -> &'a str {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} is not in the dashboard's code"));
    let rest = &text[at + marker.len()..];
    &rest[..rest.find(end).unwrap()]
}

/// Every GraphQL query and mutation the dashboard's modules write as a template literal.
fn dashboard_operations() -> Vec<String> {
    let mut found = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/js"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "js"))
        .collect();
    files.sort();
    for path in files {
        let code = std::fs::read_to_string(&path).unwrap();
        for kind in ["`query(", "`query {", "`mutation("] {
            for (at, _) in code.match_indices(kind) {
                let body = &code[at + 1..];
                found.push(body[..body.find('`').unwrap()].to_owned());
            }
        }
    }
    found
}

/// The variables an operation declares (`$name:` in its header).
fn declared(operation: &str) -> Vec<&str> {
    let header = &operation[..operation.find('{').unwrap()];
    header
        .split('$')
        .skip(1)
        .map(|v| v.split(':').next().unwrap().trim())
        .collect()
}

/// Sends one GraphQL operation with the admin key; returns the HTTP status and the answer.
async fn graphql(app: &TestApp, body: String) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(300))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Runs `operation` with the values the dashboard would give its variables; fails on any
/// GraphQL error (`QUERY_TOO_COMPLEX` among them).
async fn run(app: &TestApp, operation: &str, values: &Value) -> Value {
    let variables: serde_json::Map<String, Value> = declared(operation)
        .into_iter()
        .map(|name| {
            let value = values.get(name).unwrap_or_else(|| {
                panic!("no test value for ${name} of the dashboard's {operation}")
            });
            (name.to_owned(), value.clone())
        })
        .collect();
    let body = json!({"query": operation, "variables": variables}).to_string();
    let (status, answer) = graphql(app, body).await;
    assert!(
        status == 200 && answer.get("errors").is_none() && answer["data"].is_object(),
        "the ConfigMap's limits refuse the dashboard's {operation} {variables:?}: {status} {answer}"
    );
    answer
}

#[tokio::test]
async fn the_configmap_serves_the_dashboard_and_the_largest_job() {
    let vars = configmap();
    let max_domains: usize = vars
        .iter()
        .find(|(k, _)| k == "MAX_DOMAINS_PER_JOB")
        .map_or(100_000, |(_, v)| v.parse().unwrap());
    let mut overrides: Vec<(&str, &str)> =
        vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Only where the test runs differs from the cluster: loopback addresses and ports of
    // its own, the admin key the Secret brings, and migrations in the process (the cluster's
    // migrate Job has no counterpart here).
    overrides.extend([
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("OPS_ADDR", "127.0.0.1:0"),
        ("RUN_MIGRATIONS", "true"),
        ("BOOTSTRAP_API_KEY", KEY),
    ]);
    let app = TestApp::spawn_api(Backend::Sqlite, &overrides).await;

    let operations = dashboard_operations();
    let create = operations
        .iter()
        .find(|o| o.contains("createJob("))
        .expect("the dashboard's createJob");
    let created = run(
        &app,
        create,
        &json!({"input": {"domains": ["a.example", "b.example"]}}),
    )
    .await;
    let id = created["data"]["createJob"]["id"].as_str().unwrap();
    let create_watch = operations
        .iter()
        .find(|o| o.contains("createWatch("))
        .expect("the dashboard's createWatch");
    let watched = run(
        &app,
        create_watch,
        &json!({"input": {"domains": ["a.example", "b.example"], "every": 86_400, "name": "w"}}),
    )
    .await;
    let watch_id = watched["data"]["createWatch"]["id"].as_str().unwrap();

    // The results connection is one template with the fields and page size of its caller:
    // the grid (the default fields, a page of PAGE) and "run these again" (its own).
    let api = read("assets/js/api.js");
    let grid = read("assets/js/grid.js");
    let grid_page: u64 = between(&grid, "const PAGE = ", ';').parse().unwrap();
    let default_fields = between(&api, "const RESULT_FIELDS = \"", '"');
    let again = between(&api, "await resultsPage(jobId, {", '}');
    let again_first: u64 = between(again, "first: ", ',').parse().unwrap();
    let again_fields = between(again, "fields: \"", '"');
    let mut runs = Vec::new();
    for operation in operations
        .iter()
        .filter(|o| !o.contains("createJob(") && !o.contains("createWatch("))
    {
        if operation.contains("${fields}") {
            for (fields, first, status) in [
                (default_fields, grid_page, Value::Null),
                (again_fields, again_first, json!("FAILED")),
            ] {
                let values = json!({"jobId": id, "first": first, "after": null,
                    "status": status, "errorCode": null, "domain": null});
                runs.push((operation.replace("${fields}", fields), values));
            }
        } else {
            // A watch's operations name the watch by `id`, a job's the job.
            let of_watch = operation.contains("watch(") || operation.contains("Watch(");
            let values = json!({"id": if of_watch { watch_id } else { id }, "jobId": id,
                "domain": "a.example", "clientId": null, "page": 1});
            runs.push((operation.clone(), values));
        }
    }
    // Cancelling and deleting change what the others read, so they go last.
    runs.sort_by_key(|(operation, _)| {
        operation.contains("cancelJob(") || operation.contains("deleteWatch(")
    });
    for needle in [
        "resultsConnection(",
        "candidates",
        "jobs(",
        "cancelJob(",
        "watches {",
        "changes(",
        "deleteWatch(",
    ] {
        assert!(
            runs.iter().any(|(o, _)| o.contains(needle)),
            "the dashboard's operations were not all found: no {needle} in {runs:#?}"
        );
    }
    for (operation, values) in &runs {
        run(&app, operation, values).await;
    }

    // The largest legal job: every domain a 253-octet name, each distinct.
    let domains: Vec<String> = (0..max_domains)
        .map(|i| {
            format!(
                "d{i:0>62}.{}.{}.{}.com",
                "b".repeat(63),
                "c".repeat(63),
                "e".repeat(57)
            )
        })
        .collect();
    assert!(domains.iter().all(|d| d.len() == 253));
    let body = json!({"query": create, "variables": {"input": {"domains": domains}}}).to_string();
    assert!(
        body.len() > 16 << 20,
        "the body is as large as the largest job's: {} bytes",
        body.len()
    );
    let (status, answer) = graphql(&app, body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["data"]["createJob"]["id"].is_string(),
        "the largest legal job is refused: {answer}"
    );
}
