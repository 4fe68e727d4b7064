//! The dashboard's and GraphiQL's files as HTTP serves them (the browser tests in
//! tests/browser/ drive the pages): public without a key, a strict CSP, validators, nothing
//! from another origin, and vendored files that match their manifest.

use crate::helpers::TestApp;
use sha2::{Digest, Sha256};

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn the_dashboard_is_served_without_a_key_with_a_strict_csp_and_validators() {
    let app = TestApp::api_only(&[("AUTH_MODE", "required")]).await;
    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(header(&page, "content-type").starts_with("text/html"));
    let csp = header(&page, "content-security-policy").to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    let etag = header(&page, "etag").to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains("/assets/js/app.js"), "{html}");

    let again = app
        .http
        .get(app.url("/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let script = app
        .http
        .get(app.url("/assets/js/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(header(&script, "content-type").starts_with("text/javascript"));
    assert_eq!(header(&script, "x-content-type-options"), "nosniff");

    let missing = app
        .http
        .get(app.url("/assets/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // The door still guards the API itself.
    let (status, _) = app
        .get_json("/jobs/00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn graphiql_is_our_page_and_loads_nothing_from_another_origin() {
    let app = TestApp::api_only(&[("GRAPHIQL", "true")]).await;
    let page = app
        .http
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = header(&page, "content-security-policy").to_owned();
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    for path in [
        "/assets/vendor/react/react.production.min.js",
        "/assets/vendor/react-dom/react-dom.production.min.js",
        "/assets/vendor/graphiql/graphiql.min.js",
        "/assets/vendor/graphiql/graphiql.min.css",
        "/assets/js/graphiql.js",
    ] {
        assert!(html.contains(path), "{path} not in {html}");
        let file = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(file.status(), 200, "{path}");
    }
    assert!(!html.contains("//unpkg") && !html.contains("cdn"), "{html}");
}

/// assets/vendor/fetch.py verifies what it downloads against the registry's sha512 and
/// records each file's sha256 in manifest.json; an edited vendored file shows here.
#[test]
fn vendored_files_match_their_manifest() {
    let vendor = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/vendor");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vendor.join("manifest.json")).unwrap())
            .unwrap();
    let mut files = 0;
    for package in manifest["packages"].as_array().unwrap() {
        assert!(
            package["integrity"]
                .as_str()
                .unwrap()
                .starts_with("sha512-")
        );
        assert!(
            package["version"].as_str().unwrap().split('.').count() == 3,
            "pinned"
        );
        for entry in package["files"].as_array().unwrap() {
            let bytes = std::fs::read(vendor.join(entry["to"].as_str().unwrap())).unwrap();
            let sha: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(entry["sha256"].as_str().unwrap(), sha, "{}", entry["to"]);
            files += 1;
        }
        let name = package["name"].as_str().unwrap();
        assert!(
            vendor.join(name).join("LICENSE").is_file(),
            "{name} has no LICENSE"
        );
    }
    assert_eq!(files, 7);
}
