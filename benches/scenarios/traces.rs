//! The `tracing` scenario: what OpenTelemetry traces cost the bulk job, in the same run:
//! traces off, on with 1 % of traces sampled (`parentbased_traceidratio`, the README's fleet
//! setting) and with all of them (`always_on`), exporting over OTLP/HTTP to a sink in the
//! harness that accepts every request and discards it. Runs are interleaved, as in
//! `features`, so the machine's load falls on all three alike. Then one more run of each
//! under `perf record` gives the share of the service's CPU spent in tracing's own code.

use super::*;

/// An OTLP/HTTP endpoint that answers every export with 200 and keeps only counts.
struct Sink {
    addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
}

impl Sink {
    async fn start() -> Result<Self> {
        let requests = Arc::new(AtomicUsize::new(0));
        let bytes = Arc::new(AtomicUsize::new(0));
        let (r, b) = (requests.clone(), bytes.clone());
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                r.fetch_add(1, Ordering::Relaxed);
                b.fetch_add(body.len(), Ordering::Relaxed);
                async {
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            requests,
            bytes,
        })
    }
}

pub(crate) async fn sc_tracing(ctx: &mut Ctx) -> Result<()> {
    let n = ctx.opts.domains;
    let net = bulk_net(ctx, n, false, false).await?;
    let sink = Sink::start().await?;
    let endpoint = format!("http://{}", sink.addr);
    let traced = |sampler: &str, arg: &str| {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
            ("OTEL_TRACES_SAMPLER", sampler.to_owned()),
            ("OTEL_TRACES_SAMPLER_ARG", arg.to_owned()),
        ]
    };
    let variants: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        ("tracing off", vec![]),
        (
            "traces on, 1 % sampled (parentbased_traceidratio 0.01)",
            traced("parentbased_traceidratio", "0.01"),
        ),
        (
            "traces on, 100 % sampled (always_on)",
            traced("always_on", "1"),
        ),
    ];
    let mut runs: Vec<Vec<RunOut>> = vec![vec![]; variants.len()];
    let mut exported = vec![(0usize, 0usize); variants.len()];
    let mut dropped = vec![0f64; variants.len()];
    for _ in 0..ctx.opts.runs {
        for (i, (label, env)) in variants.iter().enumerate() {
            println!("    {label}:");
            let mut o = crate::stages::same_slots();
            o.env.extend(env.iter().cloned());
            let bin = ctx.bin.clone();
            let d = ctx.deploy_bin(&bin, Some(&net), o).await?;
            let (requests, bytes) = (
                sink.requests.load(Ordering::Relaxed),
                sink.bytes.load(Ordering::Relaxed),
            );
            runs[i].push(timed_job(ctx, &net, &d, n, None).await?.0);
            // The last batch leaves at most a second after the job's last span.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            exported[i].0 += sink.requests.load(Ordering::Relaxed) - requests;
            exported[i].1 += sink.bytes.load(Ordering::Relaxed) - bytes;
            dropped[i] += dropped_spans(ctx, &d.base).await;
        }
    }
    let (base_rate, _) = summarize(&runs[0]);
    let cpus: Vec<f64> = runs
        .iter()
        .map(|variant| {
            median(
                &variant
                    .iter()
                    .map(|r| r.svc_cpu / n as f64 * 1e6)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let base_cpu = cpus[0];
    for (i, (label, _)) in variants.iter().enumerate() {
        let (rate, wall) = summarize(&runs[i]);
        let cpu = cpus[i];
        ctx.row(
            &format!("tracing, bulk plain HTTP, {n} domains, embedded SQLite: {label}"),
            format!(
                "{rate:.0}/s ({:.3}× off; wall {wall:.2}s), service CPU {cpu:.0} µs per domain ({:+.0} µs against off); exported {} requests, {:.1} MB; {} spans dropped",
                rate / base_rate,
                cpu - base_cpu,
                exported[i].0,
                exported[i].1 as f64 / 1e6,
                dropped[i]
            ),
            if i == 1 { "1 % costs at most 3 %" } else { "(reported)" },
            (i == 1).then_some(rate / base_rate >= 0.97),
        );
    }
    trace_code_shares(ctx, &net, n, &variants, &cpus).await
}

/// Frames of the code that builds, filters and exports spans: a sample whose stack holds one
/// is tracing's cost (with traces off, the log lines' share).
const TRACE_FRAMES: &[&str] = &[
    "tracing_core::",
    "tracing_subscriber::",
    "tracing_opentelemetry::",
    "opentelemetry",
    "favicon_finder::telemetry",
];

/// One more run of each variant under `perf record`: the share of the service's CPU samples
/// in tracing's code, and what that is per domain at the variant's median CPU per domain. A
/// throughput ratio on two busy cores moves by several per cent from run to run; this split
/// does not depend on what else the machine did.
async fn trace_code_shares(
    ctx: &mut Ctx,
    net: &FakeInternet,
    n: usize,
    variants: &[(&str, Vec<(&'static str, String)>)],
    cpus: &[f64],
) -> Result<()> {
    let mut cells = vec![];
    for (i, (label, env)) in variants.iter().enumerate() {
        let mut o = crate::stages::same_slots();
        o.env.extend(env.iter().cloned());
        let bin = ctx.bin.clone();
        let name = format!("tracing-{i}");
        let Some(text) = crate::stages::perf_run(ctx, net, &bin, n, o, &name).await? else {
            ctx.note("tracing: perf is not available; no split of tracing's code".into());
            return Ok(());
        };
        let (mut samples, mut traced) = (0usize, 0usize);
        for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
            samples += 1;
            if block
                .lines()
                .any(|f| TRACE_FRAMES.iter().any(|p| f.contains(p)))
            {
                traced += 1;
            }
        }
        let share = traced as f64 / samples.max(1) as f64;
        cells.push(format!(
            "{label}: {:.1} % ({traced} of {samples}), {:.1} µs per domain",
            share * 100.0,
            share * cpus[i]
        ));
    }
    ctx.row(
        &format!("tracing, bulk plain HTTP, {n} domains: tracing's own code in the service's CPU samples (one run each under perf)"),
        cells.join("; "),
        "(reported)",
        None,
    );
    Ok(())
}

/// `favicon_finder_trace_spans_dropped_total` of the deployment's API.
async fn dropped_spans(ctx: &Ctx, base: &str) -> f64 {
    let Ok(answer) = ctx.http.get(format!("{base}/metrics")).send().await else {
        return f64::NAN;
    };
    let text = answer.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("favicon_finder_trace_spans_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}
