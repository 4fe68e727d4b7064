//! `rediss://`: the Redis connection over TLS, against a `redis-server` of the test's own that
//! serves TLS only, with a certificate from a CA the test makes.

use crate::helpers::{Backend, ChildGuard, TestApp};
use std::path::Path;
use std::time::Duration;

/// A CA and a server certificate for 127.0.0.1 signed by it, written as PEM files.
fn make_pki(dir: &Path, name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let write = |file: &str, pem: String| {
        let path = dir.join(format!("{name}-{file}"));
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    (
        write("ca.pem", ca_cert.pem()),
        write("cert.pem", cert.pem()),
        write("key.pem", key.serialize_pem()),
    )
}

/// `redis-server` answering TLS only on `port`; `None` when it could not start there.
fn start_tls_redis(port: u16, cert: &str, key: &str, ca: &str) -> Option<ChildGuard> {
    let mut child = std::process::Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string()])
        .args(["--tls-cert-file", cert, "--tls-key-file", key])
        .args(["--tls-ca-cert-file", ca, "--tls-auth-clients", "no"])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is installed (the Redis tests need it)");
    // Listening, or exited (the port was taken, or this redis-server has no TLS).
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(ChildGuard(child));
        }
        // Wall-clock: a redis-server process coming up.
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

/// What `/readyz` says of Redis once it says "ok", or after `patience`.
async fn redis_state(backend: Backend, url: &str, ca: &str, patience: Duration) -> String {
    let app = TestApp::spawn(
        backend,
        &[
            ("REDIS_URL", url),
            ("REDIS_CA_CERT", ca),
            ("REDIS_PREFIX", "ff-tls"),
        ],
    )
    .await;
    // Connecting is asynchronous: wait for the first answer that is not "not yet".
    let deadline = tokio::time::Instant::now() + patience;
    let state = loop {
        let (_, ready) = app.get_json("/readyz").await;
        let state = ready["checks"]["redis"].as_str().unwrap_or("").to_owned();
        if state == "ok" || tokio::time::Instant::now() > deadline {
            break state;
        }
        // Wall-clock: the app's TLS connection to a real Redis.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    app.stop().await;
    state
}

/// How long a connection that must fail is given to succeed: several reconnect attempts.
const TRIES: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_connects_with_the_ca_and_refuses_a_wrong_one() {
    if !crate::services::available("redis-server", crate::services::on_path("redis-server")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_pki(dir.path(), "good");
    let (other_ca, _, _) = make_pki(dir.path(), "other");
    let mut server = None;
    for _ in 0..10 {
        let port = rand_port();
        if let Some(child) = start_tls_redis(port, &cert, &key, &ca) {
            server = Some((port, child));
            break;
        }
    }
    let (port, _server) = server.expect("a TLS redis-server started on a free port");

    let tls_url = format!("rediss://127.0.0.1:{port}");
    assert_eq!(
        redis_state(Backend::Sqlite, &tls_url, &ca, Duration::from_secs(10)).await,
        "ok"
    );

    // The certificate is verified: a CA that did not sign it is not trusted.
    let wrong = redis_state(Backend::Sqlite, &tls_url, &other_ca, TRIES).await;
    assert!(wrong.starts_with("unreachable"), "{wrong}");

    // And the server really speaks only TLS: clear text to the same port gets nowhere.
    let plain = redis_state(
        Backend::Sqlite,
        &format!("redis://127.0.0.1:{port}"),
        &ca,
        TRIES,
    )
    .await;
    assert!(plain.starts_with("unreachable"), "{plain}");
}

/// A port from the dynamic range that the caller tries to listen on (a taken one just makes
/// `redis-server` exit, and the caller tries another).
fn rand_port() -> u16 {
    use rand::Rng;
    rand::rng().random_range(20_000..60_000)
}

#[test]
fn only_redis_schemes_this_build_serves_are_accepted() {
    for (url, ok) in [
        ("redis://127.0.0.1:6379", true),
        ("rediss://cache.example:6380/1", true),
        ("redis-sentinel://127.0.0.1:26379", false),
        ("unix:///run/redis.sock", false),
        ("http://127.0.0.1:6379", false),
        ("127.0.0.1:6379", false),
    ] {
        let vars = [("REDIS_URL", url)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let result = favicon_finder::config::Config::from_vars(vars);
        match (ok, result) {
            (true, Ok(_)) => {}
            (false, Err(e)) => {
                assert_eq!(e.var, "REDIS_URL");
                assert!(e.reason.contains("rediss://"), "{e}");
            }
            (ok, result) => panic!("{url}: expected ok={ok}, got {:?}", result.map(|_| ())),
        }
    }
}
