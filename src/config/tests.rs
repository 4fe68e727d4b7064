//! The configuration's parsing, defaults and redaction.

use super::*;

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_match_the_design() {
    let config = Config::from_vars(HashMap::new()).unwrap();
    // The documented value (.env.template, README), not the constant the code reads: a
    // changed default must change the docs and this line with it.
    assert_eq!(config.database_url, "sqlite://favicon-finder.db?mode=rwc");
    assert_eq!(config.port, 3000);
    assert_eq!(config.worker_concurrency, 512);
    // A lone job holds 409 slots; 103 stay for others.
    assert_eq!(
        crate::model::fair::per_job_cap(config.worker_concurrency, config.worker_max_share_per_job),
        409
    );
    assert_eq!(config.fetch_timeout, Duration::from_secs(15));
    assert_eq!(config.fetch_slot_wait, Duration::from_secs(120));
    assert_eq!(config.fetch_max_tries, 3);
    assert_eq!(config.max_domains_per_job, 100_000);
    assert!(!config.fetch_allow_private_networks);
    assert!(config.redis_url.is_none());
    assert_eq!(config.log_format, LogFormat::Text);
    assert_eq!(config.max_request_bytes, 25_665_536);
    assert_eq!(config.ws_max_message_bytes, 65_536);
    assert_eq!(config.fetch_per_address_concurrency, 16);
    assert!(config.fetch_dns_servers.is_empty());
    assert_eq!(config.fetch_dns_max_inflight, 256);
    assert_eq!(config.fetch_dns_timeout, Duration::from_secs(5));
    assert_eq!(config.retention_days, 30);
    assert_eq!(config.retention_interval, Duration::from_secs(3_600));
    assert_eq!(config.retention_batch_rows, 2_000);
}

#[test]
fn retention_settings_parse_and_zero_keeps_everything() {
    let config = Config::from_vars(vars(&[
        ("RETENTION_DAYS", "0"),
        ("RETENTION_INTERVAL_SECS", "60"),
        ("RETENTION_BATCH_ROWS", "500"),
    ]))
    .unwrap();
    assert_eq!(config.retention_days, 0);
    assert_eq!(config.retention_interval, Duration::from_secs(60));
    assert_eq!(config.retention_batch_rows, 500);
    for (var, value) in [
        ("RETENTION_INTERVAL_SECS", "0"),
        ("RETENTION_BATCH_ROWS", "0"),
        ("RETENTION_DAYS", "-1"),
    ] {
        let err = Config::from_vars(vars(&[(var, value)])).unwrap_err();
        assert!(err.to_string().contains(var), "{err}");
    }
}

#[test]
fn dns_settings_reach_the_finder() {
    let config = Config::from_vars(vars(&[
        ("FETCH_DNS_SERVERS", "127.0.0.1:5353, [::1]:53"),
        ("FETCH_DNS_MAX_INFLIGHT", "8"),
        ("FETCH_DNS_TIMEOUT_MS", "750"),
        ("FETCH_PER_ADDRESS_CONCURRENCY", "3"),
    ]))
    .unwrap();
    let finder = config.finder();
    assert_eq!(
        finder.dns_servers,
        [
            "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
            "[::1]:53".parse().unwrap()
        ]
    );
    assert_eq!(finder.dns_max_inflight, 8);
    assert_eq!(finder.dns_timeout, Duration::from_millis(750));
    assert_eq!(finder.per_address_concurrency, 3);
}

#[test]
fn query_secrets_are_redacted() {
    for (raw, secret) in [
        ("postgres://db/ff?password=s3cret", "s3cret"),
        ("postgres://db/ff?sslmode=require&PASSWORD=s3cret", "s3cret"),
        ("redis://cache:6379/?Pass=hunter2", "hunter2"),
        ("https://x.example/?pwd=p%40ss", "p%40ss"),
        ("https://x.example/?token=abc123&a=1", "abc123"),
        ("https://x.example/?access_token=abc123", "abc123"),
        ("https://x.example/?secret=abc123", "abc123"),
        ("https://x.example/?key=abc123", "abc123"),
        ("https://x.example/?Api_Key=abc123", "abc123"),
        ("https://x.example/?auth=abc123", "abc123"),
        ("https://x.example/?api%5Fkey=abc123", "abc123"),
        ("postgres://app:s3cret@db/ff?token=t0k3n", "t0k3n"),
    ] {
        let shown = redact_url(raw);
        assert!(!shown.contains(secret), "{raw} -> {shown}");
        assert!(shown.contains("***"), "{raw} -> {shown}");
    }
    // Everything else stays as written, so the URL is still useful in a log.
    assert_eq!(
        redact_url("postgres://app:pw@db:5432/ff?sslmode=require&token=x&keyring=k"),
        "postgres://app:***@db:5432/ff?sslmode=require&token=***&keyring=k"
    );
    assert_eq!(
        redact_url("redis://127.0.0.1:6379"),
        "redis://127.0.0.1:6379"
    );
    assert_eq!(redact_url("not a url, password=x"), "***");
}

#[test]
fn the_request_limit_follows_the_domain_limit_unless_set() {
    let config = Config::from_vars(vars(&[("MAX_DOMAINS_PER_JOB", "10")])).unwrap();
    assert_eq!(config.max_request_bytes, 10 * 256 + 65_536);
    let config = Config::from_vars(vars(&[
        ("MAX_DOMAINS_PER_JOB", "10"),
        ("MAX_REQUEST_BYTES", "4096"),
    ]))
    .unwrap();
    assert_eq!(config.max_request_bytes, 4096);
    let config = Config::from_vars(vars(&[("MAX_DOMAINS_PER_JOB", "10000000")])).unwrap();
    assert_eq!(config.max_request_bytes, MAX_REQUEST_BYTES_CEILING);
}

#[test]
fn the_job_share_is_a_fraction_of_the_slots() {
    let config = Config::from_vars(vars(&[("WORKER_MAX_SHARE_PER_JOB", "1")])).unwrap();
    assert_eq!(config.worker_max_share_per_job, 1.0);
    let config = Config::from_vars(vars(&[("WORKER_MAX_SHARE_PER_JOB", "0.25")])).unwrap();
    assert_eq!(config.worker_max_share_per_job, 0.25);
    let err = Config::from_vars(vars(&[("WORKER_MAX_SHARE_PER_JOB", "0")])).unwrap_err();
    assert!(
        err.to_string().contains("more than 0 and at most 1"),
        "{err}"
    );
}

#[test]
fn a_bad_value_names_its_variable() {
    for (var, value) in [
        ("PORT", "eighty"),
        ("WORKER_CONCURRENCY", "-1"),
        ("FETCH_TIMEOUT_SECS", "0"),
        ("FETCH_ALLOW_PRIVATE_NETWORKS", "maybe"),
        ("LOG_FORMAT", "xml"),
        ("FETCH_RESOLVE", "nonsense"),
        ("HOST", "not-an-ip"),
        ("FETCH_DNS_SERVERS", "127.0.0.1"),
        ("FETCH_DNS_SERVERS", "ns1.example:53"),
        ("FETCH_DNS_MAX_INFLIGHT", "0"),
        ("FETCH_DNS_TIMEOUT_MS", "10"),
        ("FETCH_DNS_TIMEOUT_MS", "soon"),
        ("FETCH_PER_ADDRESS_CONCURRENCY", "0"),
        ("WS_MAX_MESSAGE_BYTES", "10"),
        ("WS_INIT_TIMEOUT_MS", "0"),
        ("HTTP_HEADER_TIMEOUT_MS", "soon"),
        ("EXPORT_CHUNK_BYTES", "1"),
        ("WORKER_MAX_SHARE_PER_JOB", "0"),
        ("WORKER_MAX_SHARE_PER_JOB", "1.5"),
        ("WORKER_MAX_SHARE_PER_JOB", "-0.5"),
        ("WORKER_MAX_SHARE_PER_JOB", "NaN"),
        ("WORKER_MAX_SHARE_PER_JOB", "half"),
    ] {
        let err = Config::from_vars(vars(&[(var, value)])).unwrap_err();
        assert_eq!(err.var, var);
        assert!(err.to_string().contains(var), "{err}");
    }
}

#[test]
fn passwords_are_redacted() {
    let config = Config::from_vars(vars(&[
        ("DATABASE_URL", "postgres://app:s3cret@db/ff"),
        ("REDIS_URL", "redis://:hunter2@cache:6379"),
    ]))
    .unwrap();
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[test]
fn passwords_in_query_parameters_are_redacted() {
    let shown = redact_url("postgres://db/ff?sslmode=require&Password=s3cret&user=app");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("sslmode=require") && shown.contains("user=app"),
        "{shown}"
    );
    let shown = redact_url("redis://cache:6379/?password=hunter2");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert_eq!(
        redact_url("sqlite://ff.db?mode=rwc"),
        "sqlite://ff.db?mode=rwc"
    );
}

#[test]
fn auth_is_off_on_loopback_and_required_elsewhere_unless_set() {
    let mode = |pairs: &[(&str, &str)]| Config::from_vars(vars(pairs)).unwrap().auth_mode;
    assert_eq!(mode(&[]), AuthMode::Off, "the default HOST is loopback");
    assert_eq!(mode(&[("HOST", "127.0.0.1")]), AuthMode::Off);
    assert_eq!(mode(&[("HOST", "::1")]), AuthMode::Off);
    assert_eq!(mode(&[("HOST", "0.0.0.0")]), AuthMode::Required);
    assert_eq!(mode(&[("HOST", "::")]), AuthMode::Required);
    assert_eq!(mode(&[("HOST", "10.1.2.3")]), AuthMode::Required);
    assert_eq!(
        mode(&[("HOST", "0.0.0.0"), ("AUTH_MODE", "off")]),
        AuthMode::Off
    );
    assert_eq!(
        mode(&[("HOST", "127.0.0.1"), ("AUTH_MODE", "required")]),
        AuthMode::Required
    );
    let err = Config::from_vars(vars(&[("AUTH_MODE", "maybe")])).unwrap_err();
    assert_eq!(err.var, "AUTH_MODE");
}

#[test]
fn graphiql_and_introspection_follow_the_auth_mode_unless_set() {
    let local = Config::from_vars(vars(&[])).unwrap();
    assert!(local.graphiql && local.introspection);
    let shared = Config::from_vars(vars(&[("HOST", "0.0.0.0")])).unwrap();
    assert!(!shared.graphiql && !shared.introspection);
    let chosen =
        Config::from_vars(vars(&[("HOST", "0.0.0.0"), ("INTROSPECTION", "true")])).unwrap();
    assert!(!chosen.graphiql && chosen.introspection);
}

#[test]
fn secrets_are_checked_without_being_shown() {
    let secret = "s3cret-s3cret-s3cret-s3cret-s3cret";
    for var in ["BOOTSTRAP_API_KEY", "METRICS_TOKEN", "DOWNLOAD_URL_SECRET"] {
        let config = Config::from_vars(vars(&[(var, secret)])).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains(secret), "{var} in Debug: {shown}");
        let err = Config::from_vars(vars(&[(var, "short-secret")])).unwrap_err();
        assert_eq!(err.var, var);
        assert!(!err.to_string().contains("short-secret"), "{err}");
    }
}

#[test]
fn cors_origins_must_be_exact() {
    let config = Config::from_vars(vars(&[(
        "CORS_ALLOWED_ORIGINS",
        "https://app.example.com, http://localhost:5173",
    )]))
    .unwrap();
    assert_eq!(
        config.cors_allowed_origins,
        ["https://app.example.com", "http://localhost:5173"]
    );
    for bad in [
        "https://app.example.com/",
        "https://app.example.com/path",
        "*",
        "app.example.com",
        "https://*.example.com",
        "ftp://files.example.com",
        "https://APP.example.com",
    ] {
        let err = Config::from_vars(vars(&[("CORS_ALLOWED_ORIGINS", bad)])).unwrap_err();
        assert_eq!(err.var, "CORS_ALLOWED_ORIGINS", "{bad}");
    }
}

#[test]
fn proxy_headers_and_ops_addr_parse() {
    let config = Config::from_vars(vars(&[
        ("TRUSTED_PROXY_HEADERS", "X-Forwarded-For, forwarded"),
        ("OPS_ADDR", "0.0.0.0:9100"),
    ]))
    .unwrap();
    assert_eq!(
        config.trusted_proxy_headers,
        [ProxyHeader::XForwardedFor, ProxyHeader::Forwarded]
    );
    assert_eq!(config.ops_addr, Some("0.0.0.0:9100".parse().unwrap()));
    let err = Config::from_vars(vars(&[("TRUSTED_PROXY_HEADERS", "x-client")])).unwrap_err();
    assert_eq!(err.var, "TRUSTED_PROXY_HEADERS");
}

/// The default User-Agent names no URL or address a site owner would try in vain; the
/// operator's contact comes from `FETCH_USER_AGENT`.
#[test]
fn the_default_user_agent_names_no_made_up_contact() {
    // What the finder is configured to send when nothing is set, not the constant itself:
    // a default that stopped reaching the finder would fail here.
    let sent = Config::from_vars(HashMap::new())
        .unwrap()
        .finder()
        .user_agent;
    for made_up in ["://", "www.", "+http", "@", ".com", ".org"] {
        assert!(!sent.contains(made_up), "{sent}");
    }
    assert!(sent.contains("favicon-finder/"), "{sent}");
    let config = Config::from_vars(vars(&[(
        "FETCH_USER_AGENT",
        "acme-icons/1.0 (+https://acme.example/bot; ops@acme.example)",
    )]))
    .unwrap();
    assert_eq!(
        config.finder().user_agent,
        "acme-icons/1.0 (+https://acme.example/bot; ops@acme.example)"
    );
}

#[test]
fn traces_follow_the_otel_variables() {
    let traces = |pairs: &[(&str, &str)]| Config::from_vars(vars(pairs)).unwrap().traces;
    assert_eq!(traces(&[]), None, "off by default");
    let on = traces(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).unwrap();
    assert_eq!(on.endpoint, "http://collector:4318/v1/traces");
    assert_eq!(on.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(on.service_name, "favicon-finder");
    assert_eq!(on.sampler, Sampler::ParentBasedAlwaysOn);
    let grpc = traces(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod,team=a%2Cb",
        ),
    ])
    .unwrap();
    assert_eq!(grpc.endpoint, "http://collector:4317", "gRPC takes no path");
    assert_eq!(grpc.sampler, Sampler::ParentBasedTraceIdRatio(0.01));
    assert_eq!(
        grpc.resource_attributes,
        vec![
            ("deployment.environment".to_owned(), "prod".to_owned()),
            ("team".to_owned(), "a,b".to_owned())
        ]
    );
    let exact = traces(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:9999/traces"),
    ])
    .unwrap();
    assert_eq!(
        exact.endpoint, "http://b:9999/traces",
        "the signal's own URL, as written"
    );
    let default = traces(&[("OTEL_TRACES_EXPORTER", "otlp")]).unwrap();
    assert_eq!(default.endpoint, "http://localhost:4318/v1/traces");
    for off in [
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_SDK_DISABLED", "true"),
    ] {
        assert_eq!(
            traces(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"), off]),
            None
        );
    }
}

#[test]
fn bad_otel_values_name_their_variable() {
    for (var, value) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ("OTEL_TRACES_EXPORTER", "jaeger"),
        ("OTEL_RESOURCE_ATTRIBUTES", "no-equals-sign"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
        (
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "/nonexistent/collector-ca.pem",
        ),
        ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "Cargo.toml"),
    ] {
        let err = Config::from_vars(vars(&[(var, value)])).unwrap_err();
        assert_eq!(err.var, var, "{err}");
    }
}
