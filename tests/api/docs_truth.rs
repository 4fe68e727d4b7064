//! What the READMEs state about answers and manifests, checked against the real thing: the
//! icon fallback's shape and `Cache-Control`, and the ports and Secret keys the deploy guide
//! names.

use crate::helpers::TestApp;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The text after `marker` in `text`, up to `end`.
fn after<'a>(text: &'a str, marker: &str, end: &str) -> &'a str {
    let rest = rest_after(text, marker);
    &rest[..rest.find(end).unwrap()]
}

/// The text after `marker` in `text`.
fn rest_after<'a>(text: &'a str, marker: &str) -> &'a str {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} is not in the text"));
    &text[at + marker.len()..]
}

#[tokio::test]
async fn the_fallback_is_what_the_readme_says() {
    let readme = read("README.md");
    let stated = after(
        &readme,
        "carry `X-Icon-Fallback: letter` and\n  `Cache-Control: ",
        "`",
    );
    // A custom value, so the check tells the fallback's own value from ICON_CACHE_CONTROL.
    let app = TestApp::api_only(&[("ICON_CACHE_CONTROL", "private, max-age=7")]).await;
    let get = |query: &'static str| {
        let url = app.url(&format!("/icons/never-searched.test{query}"));
        let http = app.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let plain = get("").await;
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()["x-icon-fallback"], "letter");
    assert_eq!(plain.headers()["content-type"], "image/svg+xml");
    assert_eq!(plain.headers()["cache-control"], stated);
    let plain = plain.text().await.unwrap();
    assert!(
        plain.contains("width=\"64\" height=\"64\""),
        "a 64×64 SVG: {plain}"
    );
    let sized = get("?size=32&format=png").await;
    assert_eq!(sized.headers()["content-type"], "image/svg+xml");
    assert_eq!(sized.headers()["cache-control"], stated);
    assert_eq!(
        sized.text().await.unwrap(),
        plain,
        "size and format are ignored"
    );
    let missing = get("?fallback=404").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["cache-control"], stated);
}

/// The `stringData` keys of the example Secret.
fn secret_keys() -> Vec<String> {
    let text = read("deploy/k8s/secret.example.yaml");
    let (_, data) = text.split_once("\nstringData:\n").unwrap();
    let mut keys: Vec<String> = data
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .filter(|line| !line.starts_with('#') && !line.starts_with(' '))
        .map(|line| line.split_once(':').unwrap().0.to_owned())
        .collect();
    keys.sort();
    keys
}

#[test]
fn the_deploy_guide_names_the_manifests_ports_and_secret_keys() {
    let guide = read("deploy/README.md");
    let mut named: Vec<String> = after(&guide, "from your secret manager (keys ", ").")
        .split(|c: char| c == ',' || c.is_whitespace() || c == '#')
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect();
    named.sort();
    assert_eq!(
        named,
        secret_keys(),
        "the Secret keys deploy/README.md names"
    );

    for (manifest, role) in [
        (
            "deploy/k8s/api-deployment.yaml",
            "point at `/metrics` on port ",
        ),
        ("deploy/k8s/worker-deployment.yaml", "`WORKER_HTTP_PORT="),
    ] {
        let port = after(&read(manifest), "prometheus.io/port: \"", "\"").to_owned();
        let stated: String = rest_after(&guide, role)
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert_eq!(stated, port, "{manifest}: the guide says {role}{stated}");
    }
}
