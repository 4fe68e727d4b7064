//! The OpenTelemetry settings: the standard `OTEL_*` variables every SDK reads, with the
//! meanings the specification gives them, checked here so a typo stops start-up instead of
//! silently leaving traces off.

use super::ConfigError;
use super::parse::Vars;

/// The service name spans are reported under when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_SERVICE_NAME: &str = "favicon-finder";

/// How spans reach the collector (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP over HTTP with protobuf bodies, to `{endpoint}/v1/traces`.
    HttpProtobuf,
    /// OTLP over gRPC.
    Grpc,
}

/// Which spans are kept (`OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// Every span.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// This share of traces, by trace id.
    TraceIdRatio(f64),
    /// A caller's decision when there is one (its `traceparent`'s sampled flag), else always.
    ParentBasedAlwaysOn,
    /// A caller's decision when there is one, else never.
    ParentBasedAlwaysOff,
    /// A caller's decision when there is one, else this share of traces.
    ParentBasedTraceIdRatio(f64),
}

/// Where and how traces are exported; `None` in [`super::Config::traces`] when off.
#[derive(Debug, Clone, PartialEq)]
pub struct TracesConfig {
    /// The collector: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` added for http/protobuf.
    pub endpoint: String,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` (or its `_TRACES_` form): `http/protobuf` or `grpc`.
    pub protocol: OtlpProtocol,
    /// `OTEL_SERVICE_NAME`: the `service.name` of every span.
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES`: `key=value,…` added to the resource, percent-decoded.
    pub resource_attributes: Vec<(String, String)>,
    /// `OTEL_TRACES_SAMPLER` with its `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler: Sampler,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`: spans held for export at most; past it spans are dropped
    /// (and counted) rather than held in memory or waited for.
    pub max_queue: usize,
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE` (or its `_TRACES_` form), read at start: the PEM of
    /// the CAs a collector's TLS certificate is checked against, beside the system's.
    pub certificate: Option<Vec<u8>>,
}

/// The default collector for `OTEL_TRACES_EXPORTER=otlp` without an endpoint, per protocol.
fn default_endpoint(protocol: OtlpProtocol) -> &'static str {
    match protocol {
        OtlpProtocol::HttpProtobuf => "http://localhost:4318",
        OtlpProtocol::Grpc => "http://localhost:4317",
    }
}

/// Reads the `OTEL_*` variables. Traces are on when an OTLP endpoint is set or
/// `OTEL_TRACES_EXPORTER=otlp`; `OTEL_TRACES_EXPORTER=none` turns them off whatever else is
/// set, and `OTEL_SDK_DISABLED=true` too.
pub(super) fn traces(env: &Vars) -> Result<Option<TracesConfig>, ConfigError> {
    let exporter = env.choice_opt("OTEL_TRACES_EXPORTER", &[("otlp", true), ("none", false)])?;
    let signal_endpoint = env.checked("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", check_endpoint)?;
    let base_endpoint = env.checked("OTEL_EXPORTER_OTLP_ENDPOINT", check_endpoint)?;
    let protocols = [
        ("http/protobuf", OtlpProtocol::HttpProtobuf),
        ("grpc", OtlpProtocol::Grpc),
    ];
    let protocol = match env.choice_opt("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", &protocols)? {
        Some(protocol) => protocol,
        None => env.choice(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            &protocols,
            OtlpProtocol::HttpProtobuf,
        )?,
    };
    let sampler = sampler(env)?;
    let service_name = env.string("OTEL_SERVICE_NAME", DEFAULT_SERVICE_NAME);
    let resource_attributes = env.list("OTEL_RESOURCE_ATTRIBUTES", parse_resource_attributes)?;
    let max_queue = env.parse_in("OTEL_BSP_MAX_QUEUE_SIZE", 2048, 1..=1_000_000)?;
    let certificate =
        match env.checked("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", read_certificate)? {
            Some(pem) => Some(pem),
            None => env.checked("OTEL_EXPORTER_OTLP_CERTIFICATE", read_certificate)?,
        };
    let disabled = env.bool("OTEL_SDK_DISABLED", false)?;
    let wanted = exporter.unwrap_or(signal_endpoint.is_some() || base_endpoint.is_some());
    if disabled || !wanted {
        return Ok(None);
    }
    let endpoint = match (signal_endpoint, base_endpoint) {
        (Some(endpoint), _) => endpoint,
        (None, Some(base)) if protocol == OtlpProtocol::HttpProtobuf => {
            format!("{}/v1/traces", base.trim_end_matches('/'))
        }
        (None, Some(base)) => base,
        (None, None) => match protocol {
            OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", default_endpoint(protocol)),
            OtlpProtocol::Grpc => default_endpoint(protocol).to_owned(),
        },
    };
    Ok(Some(TracesConfig {
        endpoint,
        protocol,
        service_name,
        resource_attributes,
        sampler,
        max_queue,
        certificate,
    }))
}

/// `OTEL_TRACES_SAMPLER` and its argument, the ratio of the ratio samplers, from 0 to 1
/// (default 1, as the specification says).
fn sampler(env: &Vars) -> Result<Sampler, ConfigError> {
    #[derive(Clone, Copy)]
    enum Kind {
        On,
        Off,
        Ratio,
        ParentOn,
        ParentOff,
        ParentRatio,
    }
    let kind = env.choice(
        "OTEL_TRACES_SAMPLER",
        &[
            ("always_on", Kind::On),
            ("always_off", Kind::Off),
            ("traceidratio", Kind::Ratio),
            ("parentbased_always_on", Kind::ParentOn),
            ("parentbased_always_off", Kind::ParentOff),
            ("parentbased_traceidratio", Kind::ParentRatio),
        ],
        Kind::ParentOn,
    )?;
    // Checked whichever sampler is chosen: a bad ratio is a mistake even where it is unused.
    let ratio = env.parse_in("OTEL_TRACES_SAMPLER_ARG", 1.0, 0.0..=1.0)?;
    Ok(match kind {
        Kind::On => Sampler::AlwaysOn,
        Kind::Off => Sampler::AlwaysOff,
        Kind::Ratio => Sampler::TraceIdRatio(ratio),
        Kind::ParentOn => Sampler::ParentBasedAlwaysOn,
        Kind::ParentOff => Sampler::ParentBasedAlwaysOff,
        Kind::ParentRatio => Sampler::ParentBasedTraceIdRatio(ratio),
    })
}

/// An endpoint is an `http` or `https` URL with a host.
fn check_endpoint(value: &str) -> Result<String, String> {
    let url = url::Url::parse(value).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http:// or https:// URL of the collector".into());
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// The PEM file at `path`, when it holds at least one certificate.
fn read_certificate(path: &str) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certificates) if !certificates.is_empty() => Ok(pem),
        Ok(_) => Err(format!("{path} holds no PEM certificate")),
        Err(e) => Err(format!("{path} is not PEM certificates: {e}")),
    }
}

/// `key=value,key=value` with percent-encoded values (the W3C Baggage octet rules the
/// specification borrows); an entry without `=` or with an empty key is an error.
fn parse_resource_attributes(value: &str) -> Result<Vec<(String, String)>, String> {
    let mut attributes = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((key, raw)) = entry.split_once('=') else {
            return Err(format!("{entry:?} is not key=value"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("{entry:?} has an empty key"));
        }
        let decoded = percent_encoding::percent_decode_str(raw.trim())
            .decode_utf8()
            .map_err(|_| format!("the value of {key:?} is not UTF-8 once percent-decoded"))?;
        attributes.push((key.to_owned(), decoded.into_owned()));
    }
    Ok(attributes)
}
