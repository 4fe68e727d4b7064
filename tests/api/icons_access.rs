//! Who may use `/icons/{domain}`: with `ICONS_PUBLIC=true` stored icons need no key (an
//! `<img>` cannot send one), with `false` a key with `read`; `?find=1` needs `submit`, like
//! creating a job, and counts against the caller's own client. And the icon in the result
//! views: REST and CSV `icon_url`, GraphQL `Result.icon`, absolute under `PUBLIC_URL`.

use crate::fake::{FakeInternet, Sites, png};
use crate::helpers::{Backend, TestApp, both_backends};
use favicon_finder::store::{NewKey, Store};
use serde_json::{Value, json};
use std::time::Duration;

/// A key of `client` with `scopes` ("read submit"), stored as the CLI would.
pub(crate) async fn key(app: &TestApp, client: &str, scopes: &str) -> String {
    let store = Store::connect(&app.database_url(), 1).await.unwrap();
    let generated = favicon_finder::auth::generate_key();
    store
        .create_api_key(NewKey {
            client_id: client.into(),
            name: "icons test".into(),
            scopes: scopes.into(),
            hash: generated.hash.clone(),
            prefix: generated.prefix.clone(),
        })
        .await
        .unwrap();
    generated.key
}

/// `GET path` with `key`: the status and the error code, if any.
async fn get(app: &TestApp, path: &str, key: Option<&str>) -> (u16, String) {
    let mut request = app.http.get(app.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
    (status, code)
}

/// Sites `a.test` … with one PNG icon each.
async fn internet(hosts: &[&str]) -> FakeInternet {
    let mut sites = Sites::default();
    for host in hosts {
        sites.page(host, r#"<link rel=icon href=/i.png>"#).file(
            host,
            "/i.png",
            "image/png",
            &png(16, 16),
        );
    }
    FakeInternet::start(sites).await
}

async fn usage(app: &TestApp, client: &str) -> (u64, u64) {
    let store = Store::connect(&app.database_url(), 1).await.unwrap();
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let (jobs, domains, _) = store.client_usage_since(client, since).await.unwrap();
    (jobs, domains)
}

async fn public_and_private_icons(backend: Backend) {
    let internet = internet(&["a.test", "b.test"]).await;
    let resolve = internet.resolve(&[]);
    for public in ["true", "false"] {
        let app = TestApp::spawn(
            backend,
            &[
                ("FETCH_RESOLVE", &resolve),
                ("AUTH_MODE", "required"),
                ("ICONS_PUBLIC", public),
            ],
        )
        .await;
        let submit = key(&app, "acme", "submit").await;
        let read = key(&app, "acme", "read").await;
        let both = key(&app, "acme", "read submit").await;

        // `?find=1` is creating a job: no key is 401, a key without `submit` 403.
        let find = "/icons/a.test?find=1&fallback=404";
        assert_eq!(get(&app, find, None).await, (401, "UNAUTHORIZED".into()));
        assert_eq!(
            get(&app, find, Some(&read)).await,
            (403, "FORBIDDEN".into()),
            "find=1 without the submit scope (ICONS_PUBLIC={public})"
        );
        assert_eq!(usage(&app, "acme").await, (0, 0), "a refusal costs nothing");
        assert_eq!(get(&app, find, Some(&both)).await, (200, String::new()));

        // Serving what is stored: anyone when public, a key with `read` when not.
        let stored = "/icons/a.test?fallback=404";
        let anonymous = get(&app, stored, None).await;
        let submit_only = get(&app, stored, Some(&submit)).await;
        if public == "true" {
            assert_eq!(anonymous, (200, String::new()));
            assert_eq!(submit_only, (200, String::new()));
        } else {
            assert_eq!(anonymous, (401, "UNAUTHORIZED".into()));
            assert_eq!(submit_only, (403, "FORBIDDEN".into()));
            // A submit-only key may not see the icon its lookup would store either.
            assert_eq!(
                get(&app, "/icons/b.test?find=1", Some(&submit)).await,
                (403, "FORBIDDEN".into())
            );
        }
        assert_eq!(get(&app, stored, Some(&read)).await, (200, String::new()));
        // A bad key is refused even where no key is needed, as everywhere.
        assert_eq!(
            get(
                &app,
                stored,
                Some("ffk_not-a-key-0123456789abcdefghijklmnop")
            )
            .await,
            (401, "UNAUTHORIZED".into())
        );
        app.stop().await;
    }
}
both_backends!(icons_public_or_private, public_and_private_icons);

async fn lookups_count_against_the_callers_client(backend: Backend) {
    let internet = internet(&["a.test", "b.test", "c.test"]).await;
    let app = TestApp::spawn(
        backend,
        &[
            ("FETCH_RESOLVE", &internet.resolve(&[])),
            ("AUTH_MODE", "required"),
            ("RATE_LIMIT_DOMAINS_PER_HOUR", "2"),
        ],
    )
    .await;
    let acme = key(&app, "acme", "read submit").await;
    let other = key(&app, "other", "read submit").await;
    for domain in ["a.test", "b.test"] {
        let path = format!("/icons/{domain}?find=1&fallback=404");
        assert_eq!(get(&app, &path, Some(&acme)).await, (200, String::new()));
    }
    // Each lookup is a one-domain job of the caller's client, not of a shared one.
    assert_eq!(usage(&app, "acme").await, (2, 2));
    assert_eq!(usage(&app, "icons").await, (0, 0));
    assert_eq!(
        get(&app, "/icons/c.test?find=1", Some(&acme)).await,
        (429, "RATE_LIMITED".into()),
        "acme has used its two domains"
    );
    // Another client's allowance is its own.
    assert_eq!(
        get(&app, "/icons/c.test?find=1&fallback=404", Some(&other)).await,
        (200, String::new())
    );
    assert_eq!(usage(&app, "other").await, (1, 1));
    app.stop().await;
}
both_backends!(
    lookups_count_for_the_caller,
    lookups_count_against_the_callers_client
);

async fn results_link_their_icons(backend: Backend) {
    let internet = internet(&["a.test"]).await;
    let app = TestApp::spawn(
        backend,
        &[
            ("FETCH_RESOLVE", &internet.resolve(&[])),
            ("PUBLIC_URL", "https://favicons.example.com/"),
        ],
    )
    .await;
    let (status, created) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "links", "domains": ["a.test", "gone.test"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["job_id"].as_str().unwrap().to_owned();
    app.wait_for_job(&id, Duration::from_secs(60)).await;
    let url = "https://favicons.example.com/icons/a.test";

    let (_, page) = app.get_json(&format!("/jobs/{id}/results")).await;
    let rows = page["results"].as_array().unwrap();
    assert_eq!(rows[0]["icon_url"], url, "{page}");
    assert_eq!(rows[1]["icon_url"], Value::Null, "no stored icon: {page}");

    let answer = app
        .graphql(
            "query($id: ID!) { results(jobId: $id) { results { domain \
             icon { url sha256 mime width height bytes } } } }",
            json!({"id": id}),
        )
        .await;
    let rows = &answer["data"]["results"]["results"];
    let icon = &rows[0]["icon"];
    let bytes = png(16, 16);
    assert_eq!(icon["url"], url, "{answer}");
    assert_eq!(icon["mime"], "image/png");
    assert_eq!(
        (icon["width"].clone(), icon["height"].clone()),
        (json!(16), json!(16))
    );
    assert_eq!(icon["bytes"], bytes.len(), "{answer}");
    assert_eq!(icon["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(rows[1]["icon"], Value::Null, "{answer}");
    // The ETag of the icon is its sha256.
    let served = app.http.get(app.url("/icons/a.test")).send().await.unwrap();
    assert_eq!(
        served.headers()["etag"].to_str().unwrap(),
        format!("\"{}\"", icon["sha256"].as_str().unwrap())
    );

    let csv = app
        .http
        .get(app.url(&format!("/jobs/{id}/download")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let at = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "icon_url")
        .unwrap();
    let cells: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[at].to_owned())
        .collect();
    assert_eq!(cells, [url, ""]);
    app.stop().await;
}
both_backends!(icon_links, results_link_their_icons);

/// The parts of an answer a caller can compare: status, the headers that describe it, and the
/// body with the domain's name taken out (a 404 names it).
async fn shape(app: &TestApp, path: &str, key: &str, domain: &str) -> Value {
    let response = app
        .http
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let headers = response.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
    };
    let head = json!({
        "status": response.status().as_u16(),
        "content-type": header("content-type"),
        "cache-control": header("cache-control"),
        "etag": header("etag"),
        "x-icon-fallback": header("x-icon-fallback"),
    });
    let body = response.text().await.unwrap();
    let body = match serde_json::from_str::<Value>(&body) {
        // Every answer has its own request id, which says nothing about the icon.
        Ok(mut json) => {
            if let Some(error) = json.get_mut("error").and_then(Value::as_object_mut) {
                error.remove("request_id");
            }
            json.to_string().replace(domain, "DOMAIN")
        }
        // The letter differs by its letter and colour only; its shape is that it is one.
        Err(_) => format!("svg:{}", body.contains("</text>")),
    };
    json!({"head": head, "body": body})
}

async fn private_icons_tell_other_clients_nothing(backend: Backend) {
    let internet = internet(&["a.test"]).await;
    let app = TestApp::spawn(
        backend,
        &[
            ("FETCH_RESOLVE", &internet.resolve(&[])),
            ("AUTH_MODE", "required"),
            ("ICONS_PUBLIC", "false"),
        ],
    )
    .await;
    let acme = key(&app, "acme", "read submit").await;
    let other = key(&app, "other", "read submit").await;
    let found = app
        .http
        .get(app.url("/icons/a.test?find=1"))
        .bearer_auth(&acme)
        .send()
        .await
        .unwrap();
    assert_eq!(found.status(), 200);
    assert_eq!(found.headers()["content-type"], "image/png");
    let etag = found.headers()["etag"].to_str().unwrap().to_owned();

    // Another client's key, on the domain acme found and on one nobody ever found: the
    // same answer, whatever the fallback or size asked for.
    for query in [
        "",
        "?fallback=404",
        "?fallback=letter",
        "?size=32",
        "?size=32&fallback=404",
    ] {
        let found = shape(&app, &format!("/icons/a.test{query}"), &other, "a.test").await;
        let never = shape(&app, &format!("/icons/b.test{query}"), &other, "b.test").await;
        assert_eq!(found, never, "query {query:?}");
    }
    // Knowing the icon's ETag does not help: no 304 for an icon the caller may not read.
    for domain in ["a.test", "b.test"] {
        let probe = app
            .http
            .get(app.url(&format!("/icons/{domain}?fallback=404")))
            .bearer_auth(&other)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(probe.status(), 404, "{domain}");
    }
    // The client that found it still reads it.
    let own = shape(&app, "/icons/a.test?fallback=404", &acme, "a.test").await;
    assert_eq!(own["head"]["status"], 200, "{own}");
    assert_eq!(own["head"]["etag"], etag.as_str());
    app.stop().await;
}
both_backends!(
    private_icons_reveal_nothing,
    private_icons_tell_other_clients_nothing
);
