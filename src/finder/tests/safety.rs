//! The SSRF guard and the settings that steer where the finder connects: private targets are
//! refused before any connection, however they are reached or spelled; resolve rules and
//! extra root certificates are parsed strictly.

use super::*;

#[tokio::test]
async fn private_target_blocked_and_never_contacted() {
    // With the guard on, a name that resolves to loopback is refused at connect time: the
    // server must never see a connection.
    let s = Server::start(|_| html("<head><link rel=icon href=/i.png></head>")).await;
    let f = Finder::new(config(s.port, false, 3000)).unwrap();
    let err = f.find("site.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Blocked);
    assert_eq!(s.connections_before_now().await, 0);
}

#[tokio::test]
async fn redirect_to_private_literal_blocked() {
    // With the guard on, a redirect to a literal private address is refused before any
    // request, however the literal is spelled.
    let f = Finder::new(FinderConfig {
        timeout: Duration::from_secs(2),
        allow_private_networks: false,
        resolve: vec![],
        user_agent: "t".into(),
        ..FinderConfig::default()
    })
    .unwrap();
    let u = Url::parse("http://2130706433/").unwrap();
    let e = f.fetcher.check_url(&u).unwrap_err();
    assert_eq!(e.category, ErrorCategory::Blocked);
    // An unknown special-use name is answered without any DNS traffic.
    let err = f.find("nothing.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Dns);
}

#[tokio::test]
async fn rule_for_other_host_only_gives_dns_error() {
    // A name that does not exist is a permanent failure, never retried: the rules do not cover
    // it and `.test` never goes to DNS.
    let s = Server::start(|_| status(404)).await;
    let mut cfg = config(s.port, true, 2000);
    cfg.resolve[0].host = "other.test".into();
    let err = Finder::new(cfg)
        .unwrap()
        .find("missing.test")
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::Dns);
    assert!(!err.category.is_transient());
}

#[tokio::test]
async fn private_targets_behind_a_public_site_are_refused_before_any_connection() {
    // Past the home page too, every redirect hop, icon and manifest URL is guarded.
    // The "public" sites sit on loopback through the test-only trust hook; the private target
    // is a second loopback server that must never see a connection.
    let target = Server::start(|_| ok("image/png", png_bytes(32, 32))).await;
    let tp = target.port;
    let cases: Vec<(&'static str, Resp)> = vec![
        (
            "redirect-loopback-port.test",
            redirect(302, &format!("http://127.0.0.1:{tp}/")),
        ),
        ("redirect-loopback.test", redirect(302, "http://127.0.0.1/")),
        ("redirect-decimal.test", redirect(302, "http://2130706433/")),
        ("redirect-hex.test", redirect(302, "http://0x7f.1/")),
        (
            "redirect-mapped-v6.test",
            redirect(302, "http://[::ffff:127.0.0.1]/"),
        ),
        ("redirect-name.test", redirect(301, "http://inner.test/")),
        (
            "icon-literal.test",
            html(&format!(
                "<head><link rel=icon href=http://127.0.0.1:{tp}/i.png></head>"
            )),
        ),
        (
            "icon-name.test",
            html("<head><link rel=icon href=http://inner.test/i.png></head>"),
        ),
        (
            "icon-redirect.test",
            html("<head><link rel=icon href=/r.png></head>"),
        ),
        (
            "manifest-name.test",
            html("<head><link rel=manifest href=http://inner.test/m.json></head>"),
        ),
    ];
    let hosts: Vec<&'static str> = cases.iter().map(|(h, _)| *h).collect();
    let pages: std::collections::HashMap<&'static str, Resp> = cases.into_iter().collect();
    let pages = Arc::new(Mutex::new(pages));
    let site = Server::start(move |r| {
        if r.path == "/r.png" {
            return redirect(302, "http://inner.test/i.png");
        }
        if r.path != "/" {
            return status(404);
        }
        if r.host == "control.test" {
            return html("<head><title>no icons</title></head>");
        }
        let pages = pages.lock().unwrap();
        match pages.get(r.host.as_str()) {
            Some(p) => Resp {
                status: p.status,
                headers: p.headers.clone(),
                body: match &p.body {
                    Body::Bytes(b) => Body::Bytes(b.clone()),
                    _ => Body::Bytes(Vec::new()),
                },
                delay: p.delay,
            },
            None => status(404),
        }
    })
    .await;
    let mut cfg = config(site.port, false, 3000);
    cfg.resolve.insert(
        0,
        ResolveRule {
            host: "inner.test".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], tp)),
        },
    );
    let mut trusted = hosts.clone();
    trusted.push("control.test");
    let f = Finder::new_trusting(cfg, &trusted).unwrap();
    for host in &hosts {
        let err = f.find(host).await.unwrap_err();
        assert_eq!(err.category, ErrorCategory::Blocked, "{host}: {err:?}");
    }
    assert_eq!(
        target.connections_before_now().await,
        0,
        "the private target was reached"
    );
    // The control: the hook itself does not refuse, the trusted site is really served.
    let site_paths = site.paths();
    assert!(site_paths.contains(&"redirect-name.test/".to_string()));
    assert!(site_paths.contains(&"icon-redirect.test/r.png".to_string()));
    let err = f.find("control.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NoIcon, "{err:?}");
}

#[test]
fn resolve_rules_parse() {
    assert_eq!(parse_resolve_rules("").unwrap(), []);
    assert_eq!(parse_resolve_rules("  ").unwrap(), []);
    let r =
        parse_resolve_rules(" a.test=127.0.0.1:8080 , *=[::1]:9000,B.Test.=10.0.0.1:80").unwrap();
    assert_eq!(
        r,
        [
            ResolveRule {
                host: "a.test".into(),
                addr: "127.0.0.1:8080".parse().unwrap()
            },
            ResolveRule {
                host: "*".into(),
                addr: "[::1]:9000".parse().unwrap()
            },
            ResolveRule {
                host: "b.test".into(),
                addr: "10.0.0.1:80".parse().unwrap()
            },
        ]
    );
    let e = parse_resolve_rules("a.test=127.0.0.1:1,bad").unwrap_err();
    assert!(e.contains("\"bad\""), "{e}");
    assert!(
        parse_resolve_rules("x=127.0.0.1")
            .unwrap_err()
            .contains("x=127.0.0.1")
    );
    assert!(parse_resolve_rules("x=::1:80").is_err());
    assert!(parse_resolve_rules("a b=127.0.0.1:80").is_err());
}

#[test]
fn bad_pem_names_the_path() {
    let dir = std::env::temp_dir().join(format!("finder-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.pem");
    std::fs::write(&p, "not a certificate").unwrap();
    let mut cfg = config(1, true, 1000);
    cfg.extra_root_certs = Some(p.clone());
    let err = Finder::new(cfg.clone()).err().unwrap().to_string();
    assert!(err.contains("bad.pem"), "{err}");
    cfg.extra_root_certs = Some(dir.join("missing.pem"));
    let err = Finder::new(cfg).err().unwrap().to_string();
    assert!(err.contains("missing.pem"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
