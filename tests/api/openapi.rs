//! The checked-in `openapi.json` is the REST contract: it must equal what the code generates
//! and `/openapi.json` serves, and every answer the real app gives to a documented call must
//! have a documented status, content type and (for JSON) a body its schema accepts, with no
//! field the schema does not name.

use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, TestApp};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

#[test]
fn checked_in_document_matches_the_code() {
    let checked_in = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"))
        .expect("openapi.json at the repository root");
    assert!(
        checked_in == favicon_finder::api::openapi::json(),
        "openapi.json is out of date: run `cargo run -- openapi > openapi.json`"
    );
}

#[test]
fn openapi_command_prints_the_same_document() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_favicon-finder"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        favicon_finder::api::openapi::json()
    );
}

/// The document as the app serves it, and what checks answers against it.
pub(crate) struct Contract {
    /// openapi.json, parsed.
    pub(crate) document: Value,
    /// The operations called so far, as `method template`.
    pub(crate) called: Mutex<BTreeSet<String>>,
}

/// Who a call is sent as: a bearer key, and a `Host` of its own.
#[derive(Clone, Copy, Default)]
pub(crate) struct As<'a> {
    /// Sent as `Authorization: Bearer …`.
    pub(crate) key: Option<&'a str>,
    /// Sent as `Host`, instead of the address's.
    pub(crate) host: Option<&'a str>,
}

impl Contract {
    /// The operation `method` of path template `template`.
    pub(crate) fn operation(&self, method: &str, template: &str) -> &Value {
        let operation = &self.document["paths"][template][method];
        assert!(
            operation.is_object(),
            "{method} {template} is not in openapi.json"
        );
        operation
    }

    /// Sends `method url` (with a JSON `body`), the concrete form of `template`, and checks
    /// the answer against the document; returns the status and the JSON body (null if none).
    async fn call(
        &self,
        app: &TestApp,
        method: &str,
        template: &str,
        url: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_as(app, As::default(), method, template, url, body)
            .await
    }

    /// [`Contract::call`], sent as `who`.
    pub(crate) async fn call_as(
        &self,
        app: &TestApp,
        who: As<'_>,
        method: &str,
        template: &str,
        url: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let operation = self.operation(method, template);
        self.called
            .lock()
            .unwrap()
            .insert(format!("{method} {template}"));
        let mut request = app
            .http
            .request(method.to_uppercase().parse().unwrap(), app.url(url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = who.key {
            request = request.bearer_auth(key);
        }
        if let Some(host) = who.host {
            request = request.header("host", host);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let documented = &operation["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {url} answered {status}, which openapi.json does not list: {text}"
        );
        let Some(content) = documented["content"].as_object() else {
            assert!(
                text.is_empty(),
                "{method} {url} {status} has a body the document does not describe: {text}"
            );
            return (status, Value::Null);
        };
        let content_type = content_type.unwrap_or_default();
        let media = content_type.split(';').next().unwrap().trim();
        let described = content
            .iter()
            .find(|(documented, _)| {
                let documented = documented.split(';').next().unwrap().trim();
                documented == media
                    || documented
                        .strip_suffix("/*")
                        .is_some_and(|kind| media.split('/').next() == Some(kind))
            })
            .unwrap_or_else(|| {
                panic!(
                    "{method} {url} {status} is {content_type:?}, the document lists {:?}",
                    content.keys().collect::<Vec<_>>()
                )
            });
        if media != "application/json" {
            return (status, Value::Null);
        }
        let value: Value = serde_json::from_str(&text).unwrap();
        let errors = self.check(&described.1["schema"], &value);
        assert!(
            errors.is_empty(),
            "{method} {url} {status}: the answer does not fit openapi.json: {errors:#?}\n{value:#}"
        );
        (status, value)
    }

    /// What is wrong with `value` under `schema` (which may `$ref` the components), with
    /// every object closed: a field the document does not name is wrong too.
    fn check(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut components = self.document["components"].clone();
        // A schema that is a part of another's all-of (a flattened struct) is closed by the
        // whole it is part of: closed alone, it would refuse the whole's other fields.
        let mut parts = BTreeSet::new();
        all_of_refs(&self.document, &mut parts);
        for (name, schema) in components["schemas"].as_object_mut().unwrap().iter_mut() {
            if !parts.contains(&format!("#/components/schemas/{name}")) {
                close(schema);
            }
        }
        let mut root = schema.clone();
        close(&mut root);
        root["components"] = components;
        let validator = jsonschema::draft202012::new(&root)
            .unwrap_or_else(|e| panic!("the schema does not compile: {e}\n{root:#}"));
        validator
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }
}

/// Every `$ref` that is a part of an `allOf`, anywhere in `value`.
fn all_of_refs(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Array(parts)) = object.get("allOf") {
                found.extend(
                    parts
                        .iter()
                        .filter_map(|part| part["$ref"].as_str().map(str::to_owned)),
                );
            }
            object.values().for_each(|v| all_of_refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| all_of_refs(v, found)),
        _ => {}
    }
}

/// Forbids fields a schema does not evaluate, at each object (or all-of) level: an answer
/// with an undocumented field fails. `unevaluatedProperties` sees through `allOf`, so a
/// flattened struct is closed once, at its outer level.
fn close(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let closes = object.contains_key("properties") || object.contains_key("allOf");
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(Value::Array(parts)) = object.get_mut(key) {
            for part in parts {
                // Parts of an all-of are opened by their owner's closure; their own
                // properties still need closing below them.
                if key == "allOf" {
                    if let Some(properties) = part.get_mut("properties") {
                        for (_, property) in properties.as_object_mut().unwrap().iter_mut() {
                            close(property);
                        }
                    }
                } else {
                    close(part);
                }
            }
        }
    }
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for (_, property) in properties.iter_mut() {
            close(property);
        }
    }
    if let Some(items) = object.get_mut("items") {
        close(items);
    }
    if closes {
        object.insert("unevaluatedProperties".into(), Value::Bool(false));
    }
}

/// Walks every documented operation against the real app, with real answers: a job that
/// finds one icon and fails one domain, its results in both paging forms and filtered, the
/// CSV, an icon and a letter fallback, each kind of error, the cancel and the delete.
#[tokio::test]
async fn every_documented_call_answers_as_documented() {
    let mut sites = Sites::default();
    sites.icon_site("ok.test");
    let internet = FakeInternet::start(sites).await;
    let resolve = internet.resolve_exact(&[]);
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[
            ("FETCH_RESOLVE", resolve.as_str()),
            ("WEBHOOK_SECRET_KEY", crate::webhooks_api::SEALING_KEY),
        ],
    )
    .await;

    let served = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "application/json");
    let text = served.text().await.unwrap();
    assert_eq!(text, favicon_finder::api::openapi::json());
    let contract = Contract {
        document: serde_json::from_str(&text).unwrap(),
        called: Mutex::default(),
    };
    assert_eq!(contract.document["openapi"], "3.1.0");

    let (status, created) = contract
        .call(
            &app,
            "post",
            "/jobs",
            "/jobs",
            Some(json!({"client_id": "contract", "domains": ["ok.test", "nx.test"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["job_id"].as_str().unwrap().to_owned();
    let (status, refused) = contract
        .call(
            &app,
            "post",
            "/jobs",
            "/jobs",
            Some(json!({"client_id": "contract", "domains": ["ok.test", "not a domain"]})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"]["code"], "INVALID_DOMAINS", "{refused}");
    app.wait_for_job(&id, Duration::from_secs(30)).await;

    let job = format!("/jobs/{id}");
    let (_, answer) = contract.call(&app, "get", "/jobs/{id}", &job, None).await;
    assert_eq!(
        (answer["completed"].as_i64(), answer["failed"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        answer["failures_by_reason"][0]["error_code"], "dns",
        "{answer}"
    );
    // The check can fail: a field the document does not name, or a wrong type, is caught.
    let job_schema = json!({"$ref": "#/components/schemas/Job"});
    let mut extra = answer.clone();
    extra["surprise"] = json!(1);
    assert_eq!(
        contract.check(&job_schema, &extra).len(),
        1,
        "an undocumented field"
    );
    let mut wrong = answer.clone();
    wrong["failures_by_reason"][0]["count"] = json!("1");
    // The job is an all-of (its fields, then its links), so the validator may report the
    // part that failed as well as the field: what matters is that the field is named.
    let errors = contract.check(&job_schema, &wrong);
    assert!(
        errors
            .iter()
            .any(|e| e.ends_with(" at /failures_by_reason/0/count")),
        "a count as text: {errors:?}"
    );
    let results = "/jobs/{id}/results";
    for query in [
        "",
        "?page=2&per_page=1",
        "?first=1",
        "?status=failed&error_code=dns",
        "?domain=ok",
    ] {
        let (status, page) = contract
            .call(&app, "get", results, &format!("{job}/results{query}"), None)
            .await;
        assert_eq!(status, 200, "{query}: {page}");
        assert!(
            !page["results"].as_array().unwrap().is_empty(),
            "{query}: {page}"
        );
    }
    let (_, slice) = contract
        .call(
            &app,
            "get",
            results,
            &format!("{job}/results?first=1"),
            None,
        )
        .await;
    let after = slice["page_info"]["end_cursor"].as_str().unwrap();
    let (_, rest) = contract
        .call(
            &app,
            "get",
            results,
            &format!("{job}/results?first=5&after={after}"),
            None,
        )
        .await;
    assert_eq!(rest["results"][0]["domain"], "nx.test", "{rest}");
    assert_eq!(rest["page_info"]["has_next_page"], false);
    let (status, _) = contract
        .call(&app, "get", results, &format!("{job}/results?page=0"), None)
        .await;
    assert_eq!(status, 400);
    contract
        .call(
            &app,
            "get",
            "/jobs/{id}/download",
            &format!("{job}/download"),
            None,
        )
        .await;

    let (status, _) = contract
        .call(&app, "get", "/icons/{domain}", "/icons/ok.test", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = contract
        .call(&app, "get", "/icons/{domain}", "/icons/nx.test", None)
        .await;
    assert_eq!(status, 200, "the letter fallback");
    let (status, missing) = contract
        .call(
            &app,
            "get",
            "/icons/{domain}",
            "/icons/nx.test?fallback=404",
            None,
        )
        .await;
    assert_eq!(
        (status, &missing["error"]["code"]),
        (404, &json!("NOT_FOUND"))
    );
    let (status, _) = contract
        .call(
            &app,
            "get",
            "/icons/{domain}",
            "/icons/nx.test?size=9999",
            None,
        )
        .await;
    assert_eq!(status, 400);
    let (status, refreshed) = contract
        .call(
            &app,
            "post",
            "/icons/{domain}/refresh",
            "/icons/ok.test/refresh",
            Some(json!({})),
        )
        .await;
    assert_eq!((status, &refreshed["status"]), (200, &json!("success")));
    let (status, _) = contract
        .call(
            &app,
            "post",
            "/icons/{domain}/refresh",
            "/icons/nx.test/refresh",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "a failed lookup is an answer too");
    let (status, _) = contract
        .call(
            &app,
            "post",
            "/icons/{domain}/refresh",
            "/icons/localhost/refresh",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 400);

    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, _) = contract.call(&app, "get", path, path, None).await;
        assert_eq!(status, 200, "{path}");
    }

    let unknown = format!("/jobs/{}", uuid::Uuid::new_v4());
    let (status, _) = contract
        .call(&app, "get", "/jobs/{id}", &unknown, None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = contract
        .call(&app, "get", "/jobs/{id}", "/jobs/not-a-uuid", None)
        .await;
    assert_eq!(status, 400);
    let (status, refused) = contract
        .call(
            &app,
            "post",
            "/jobs/{id}/cancel",
            &format!("{job}/cancel"),
            None,
        )
        .await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (415, &json!("UNSUPPORTED_MEDIA_TYPE"))
    );
    let (status, cancelled) = contract
        .call(
            &app,
            "post",
            "/jobs/{id}/cancel",
            &format!("{job}/cancel"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, &cancelled["status"]),
        (200, &json!("completed")),
        "a finished job stays"
    );
    let (status, _) = contract
        .call(&app, "delete", "/jobs/{id}", &job, None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = contract
        .call(&app, "delete", "/jobs/{id}", &job, None)
        .await;
    assert_eq!(status, 404);

    webhook_calls(&contract, &app).await;
    watch_calls(&contract, &app).await;

    // Every operation in the document was called above: a new one needs its call here.
    let documented: BTreeSet<String> = contract.document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(template, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{method} {template}"))
        })
        .collect();
    assert_eq!(*contract.called.lock().unwrap(), documented);
}

/// Every webhook operation, its answers and errors: an endpoint made, listed, read, rotated,
/// enabled, sent a test event that the app's own deliverer tries (at `/healthz`, which
/// answers a POST 405, so the delivery has a failed attempt to show), its deliveries, a
/// redelivery, and the delete.
async fn webhook_calls(contract: &Contract, app: &TestApp) {
    let (status, refused) = contract
        .call(
            app,
            "post",
            "/webhooks",
            "/webhooks",
            Some(json!({"client_id": "contract"})),
        )
        .await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (400, &json!("INVALID_INPUT"))
    );
    let (status, _) = contract
        .call(app, "post", "/webhooks", "/webhooks", None)
        .await;
    assert_eq!(status, 415);
    let hook =
        json!({"url": app.url("/healthz"), "client_id": "contract", "description": "contract"});
    let (status, created) = contract
        .call(app, "post", "/webhooks", "/webhooks", Some(hook))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let one = format!("/webhooks/{id}");
    let (_, listed) = contract
        .call(
            app,
            "get",
            "/webhooks",
            "/webhooks?client_id=contract",
            None,
        )
        .await;
    assert_eq!(listed["webhooks"][0]["id"], id.as_str(), "{listed}");
    let (status, _) = contract
        .call(app, "get", "/webhooks/{id}", &one, None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = contract
        .call(app, "get", "/webhooks/{id}", "/webhooks/not-an-id", None)
        .await;
    assert_eq!(status, 400);
    let rotate = format!("{one}/rotate-secret");
    let (status, rotated) = contract
        .call(
            app,
            "post",
            "/webhooks/{id}/rotate-secret",
            &rotate,
            Some(json!({"overlap_secs": 60})),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let (status, _) = contract
        .call(
            app,
            "post",
            "/webhooks/{id}/rotate-secret",
            &rotate,
            Some(json!({"overlap_secs": "soon"})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = contract
        .call(
            app,
            "post",
            "/webhooks/{id}/enable",
            &format!("{one}/enable"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, queued) = contract
        .call(
            app,
            "post",
            "/webhooks/{id}/test",
            &format!("{one}/test"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    let deliveries = format!("{one}/deliveries");
    let mut tried = json!(null);
    for _ in 0..100 {
        let (status, page) = contract
            .call(app, "get", "/webhooks/{id}/deliveries", &deliveries, None)
            .await;
        assert_eq!(status, 200, "{page}");
        if page["deliveries"][0]["attempts"].as_i64() > Some(0) {
            tried = page;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        tried["deliveries"][0]["attempt_log"][0]["status_code"], 405,
        "the attempt is shown: {tried}"
    );
    let (status, _) = contract
        .call(
            app,
            "get",
            "/webhooks/{id}/deliveries",
            &format!("{deliveries}?page=0"),
            None,
        )
        .await;
    assert_eq!(status, 400);
    let redeliver = format!(
        "/webhooks/deliveries/{}/redeliver",
        queued["id"].as_str().unwrap()
    );
    let (status, again) = contract
        .call(
            app,
            "post",
            "/webhooks/deliveries/{id}/redeliver",
            &redeliver,
            Some(json!({})),
        )
        .await;
    assert_eq!((status, &again["event_id"]), (202, &queued["event_id"]));
    let (status, _) = contract
        .call(app, "delete", "/webhooks/{id}", &one, None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = contract
        .call(app, "delete", "/webhooks/{id}", &one, None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = contract
        .call(
            app,
            "post",
            "/webhooks/deliveries/{id}/redeliver",
            &redeliver,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 404);
}

/// Every watch operation: one made (and one refused), listed, read with its domains and
/// changes, and deleted.
async fn watch_calls(contract: &Contract, app: &TestApp) {
    let (status, refused) = contract
        .call(
            app,
            "post",
            "/watches",
            "/watches",
            Some(json!({"client_id": "contract", "domains": ["ok.test"], "every": 60})),
        )
        .await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (400, &json!("INVALID_INPUT")),
        "{refused}"
    );
    let (status, created) = contract
        .call(
            app,
            "post",
            "/watches",
            "/watches",
            Some(json!({"client_id": "contract", "domains": ["ok.test"], "every": 3600})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let one = format!("/watches/{}", created["id"].as_str().unwrap());
    let (_, listed) = contract
        .call(app, "get", "/watches", "/watches?client_id=contract", None)
        .await;
    assert_eq!(listed["watches"][0]["id"], created["id"], "{listed}");
    let (status, _) = contract.call(app, "get", "/watches/{id}", &one, None).await;
    assert_eq!(status, 200);
    let (status, _) = contract
        .call(app, "get", "/watches/{id}", "/watches/not-an-id", None)
        .await;
    assert_eq!(status, 400);
    let (status, domains) = contract
        .call(
            app,
            "get",
            "/watches/{id}/domains",
            &format!("{one}/domains"),
            None,
        )
        .await;
    assert_eq!(
        (status, &domains["items"][0]["domain"]),
        (200, &json!("ok.test"))
    );
    let (status, changes) = contract
        .call(
            app,
            "get",
            "/watches/{id}/changes",
            &format!("{one}/changes"),
            None,
        )
        .await;
    assert_eq!((status, &changes["total"]), (200, &json!(0)));
    let (status, _) = contract
        .call(app, "delete", "/watches/{id}", &one, None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = contract
        .call(app, "delete", "/watches/{id}", &one, None)
        .await;
    assert_eq!(status, 404);
}
