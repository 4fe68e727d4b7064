//! The `subscribers` scenario: one `--domains` job on a fresh embedded service, alone and
//! then watched by `--subscribers` `jobProgress` subscribers, in the same invocation. It
//! reports the wall-time ratio, the service's peak RSS, and the delay from a result to its
//! event at the subscribers (issue 17: ≤ 1.3×, ≤ 250 MB, p99 ≤ 250 ms).
//!
//! The delay is measured on one clock (same machine): a measured subscriber (one in 50)
//! notes when each domain first arrives in an event; the result's `fetched_at`, which the
//! worker stamps when the fetch ends, *before* the outcome is committed, is read back
//! afterwards. Arrival − `fetched_at` is therefore commit→subscriber plus the wait for the
//! record batch: an upper bound of the commit→subscriber delay. Arrival − the fake internet's
//! time of the icon request is shown too.

use super::*;

const SUBSCRIPTION: &str = "subscription($id: ID!) { jobProgress(jobId: $id) { \
    jobId status total completed failed progress results { domain status faviconUrl errorCode } } }";

/// The bytes a subscriber reads from its socket at a time.
const CLIENT_READ_BUFFER: usize = 32 << 10;

/// What one subscriber saw.
#[derive(Default)]
pub(super) struct SubOut {
    events: usize,
    /// The largest `next` message, bytes.
    largest: usize,
    /// A `complete` message arrived.
    pub(super) completed: bool,
    last: Option<Value>,
    /// First arrival per site index, unix µs (measured subscribers only).
    pub(super) arrivals: Vec<i64>,
    /// Why it stopped early; "socket closed before completion …" when the server closed.
    pub(super) error: Option<String>,
}

/// One graphql-transport-ws subscriber of job `id`, reading until completion; a measured one
/// (`measured_n`) notes when each site's result first arrived.
pub(super) async fn subscriber(
    base: String,
    id: String,
    measured_n: Option<usize>,
    ready: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
) -> SubOut {
    let mut out = SubOut::default();
    if let Some(n) = measured_n {
        out.arrivals = vec![0; n];
    }
    let r = async {
        let permit = gate.acquire().await?;
        let url = format!("{}/graphql/ws", base.replacen("http://", "ws://", 1));
        let mut req = url.into_client_request()?;
        req.headers_mut()
            .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
        // tungstenite zeroes its whole read buffer before each read (128 KiB by default),
        // which was the clients' largest cost; an event is a few KiB to a few tens.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(CLIENT_READ_BUFFER);
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(req, Some(config), false).await?;
        drop(permit);
        let text = |v: Value| Message::Text(v.to_string().into());
        ws.send(text(json!({"type": "connection_init", "payload": {}})))
            .await?;
        ws.send(text(json!({"id": "1", "type": "subscribe",
            "payload": {"query": SUBSCRIPTION, "variables": {"id": id}}})))
            .await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        let mut first = true;
        loop {
            let Some(msg) = tokio::time::timeout_at(deadline, ws.next()).await? else {
                bail!("socket closed before completion");
            };
            let now = unix_us();
            let msg = msg?;
            if let Message::Close(frame) = &msg {
                let why = frame.as_ref().map_or_else(
                    || "no close frame".to_owned(),
                    |f| format!("{} {}", u16::from(f.code), f.reason),
                );
                bail!("socket closed before completion ({why})");
            }
            let Message::Text(t) = msg else { continue };
            let t = t.as_str();
            if t.contains("\"type\":\"next\"") {
                out.events += 1;
                out.largest = out.largest.max(t.len());
                if first {
                    first = false;
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                if measured_n.is_some() {
                    let mut v: Value = serde_json::from_str(t)?;
                    let p = v["payload"]["data"]["jobProgress"].take();
                    if let Some(rs) = p["results"].as_array() {
                        for r in rs {
                            if let Some(i) = r["domain"].as_str().and_then(site_index)
                                && let Some(slot) = out.arrivals.get_mut(i)
                                && *slot == 0
                            {
                                *slot = now;
                            }
                        }
                    }
                    out.last = Some(p);
                } else {
                    out.last = Some(Value::String(t.to_owned()));
                }
            } else if t.contains("\"type\":\"complete\"") {
                out.completed = true;
                break;
            } else if t.contains("\"type\":\"error\"") {
                bail!("error frame: {t}");
            }
        }
        let _ = ws.close(None).await;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = r {
        out.error = Some(format!("{e:#}"));
    }
    if let Some(Value::String(t)) = &out.last {
        out.last = serde_json::from_str::<Value>(t)
            .ok()
            .map(|v| v["payload"]["data"]["jobProgress"].clone());
    }
    out
}

/// The figures of one job.
struct Watched {
    wall: f64,
    hwm_mb: f64,
    rss_idle_mb: f64,
    rss_subscribed_mb: f64,
    /// Arrival − fetched_at, ms, for every measured (subscriber, domain).
    after_fetched: Vec<f64>,
    /// Arrival − the icon request at the fake internet, ms.
    after_icon: Vec<f64>,
    /// Every subscriber completed, with the final counts, and every measured one got every
    /// result.
    complete: bool,
    /// CPU seconds of the service, and of this process (fake internet and subscribers), from
    /// the gate's opening to the job's end.
    svc_cpu: f64,
    harness_cpu: f64,
    events_median: f64,
    /// The largest `next` message any subscriber received, bytes.
    largest: usize,
}

/// One fresh deployment running one `n`-domain job watched by `subs` subscribers (the
/// requests held until every subscriber is in).
async fn watched_job(ctx: &Ctx, n: usize, subs: usize) -> Result<Watched> {
    let measured_every = (subs / 50).max(1);
    let net = FakeInternet::start(
        NetOpts {
            tls: false,
            latency: Duration::ZERO,
            sites: n,
            low_ports: false,
            gated: true,
            web: None,
        },
        ctx.tmp.path(),
    )
    .await?;
    let d = ctx
        .deploy(
            Some(&net),
            DeployOpts {
                env: vec![("WS_MAX_SUBSCRIPTIONS", "10".into())],
                ..embedded()
            },
        )
        .await?;
    let rss0 = d.api.rss_kb();
    let created = post_job(&ctx.http, &d.base, &domains(n), None).await?;
    let id = created["job_id"].as_str().unwrap_or_default().to_owned();
    let ready = Arc::new(AtomicUsize::new(0));
    let conn_gate = Arc::new(tokio::sync::Semaphore::new(64));
    let t_sub = Instant::now();
    let handles: Vec<_> = (0..subs)
        .map(|i| {
            tokio::spawn(subscriber(
                d.base.clone(),
                id.clone(),
                (i % measured_every == 0).then_some(n),
                ready.clone(),
                conn_gate.clone(),
            ))
        })
        .collect();
    while ready.load(Ordering::Relaxed) < subs && t_sub.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss1 = d.api.rss_kb();
    println!(
        "    {} of {subs} subscribed in {:.2}s; service RSS {:.0} MB → {:.0} MB",
        ready.load(Ordering::Relaxed),
        t_sub.elapsed().as_secs_f64(),
        mb(rss0),
        mb(rss1)
    );
    // `HARNESS_PERF_SUBSCRIBERS=FILE` records a profile of the watched job's service there,
    // and one of this process (fake internet and subscribers) in FILE.harness.
    let perf: Vec<Child> = std::env::var("HARNESS_PERF_SUBSCRIBERS")
        .ok()
        .filter(|_| subs > 0)
        .map(|out| {
            [
                (out.clone(), d.api.pid()),
                (format!("{out}.harness"), std::process::id()),
            ]
            .into_iter()
            .filter_map(|(out, pid)| {
                Command::new("perf")
                    .args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-o", &out])
                    .args(["-p", &pid.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .ok()
            })
            .collect()
        })
        .unwrap_or_default();
    let (svc0, harness0) = (d.api.cpu(), cpu_secs("self"));
    let t0 = Instant::now();
    net.open_gate();
    wait_job(&ctx.http, &d.base, &id, job_limit(n)).await?;
    let wall = t0.elapsed().as_secs_f64();
    let mut outs = Vec::new();
    for h in handles {
        outs.push(h.await?);
    }
    let (svc_cpu, harness_cpu) = (d.api.cpu() - svc0, cpu_secs("self") - harness0);
    for mut perf in perf {
        interrupt(&perf);
        let _ = perf.wait();
    }
    let hwm = d.api.hwm_kb();
    let fetched = fetched_at(ctx, &d, &id, n).await?;
    let mut after_fetched = Vec::new();
    let mut after_icon = Vec::new();
    for o in outs.iter().filter(|o| !o.arrivals.is_empty()) {
        for (i, &a) in o.arrivals.iter().enumerate() {
            if a == 0 {
                continue;
            }
            if fetched[i] > 0 {
                after_fetched.push((a - fetched[i]) as f64 / 1000.0);
            }
            let icon = net.net.icon_seen[i].load(Ordering::Relaxed);
            if icon > 0 {
                after_icon.push((a - icon) as f64 / 1000.0);
            }
        }
    }
    let errors: Vec<&String> = outs.iter().filter_map(|o| o.error.as_ref()).collect();
    let done = outs.iter().filter(|o| o.completed).count();
    let final_ok = outs
        .iter()
        .filter(|o| {
            o.last.as_ref().is_some_and(|l| {
                l["completed"].as_i64().unwrap_or(0) + l["failed"].as_i64().unwrap_or(0) == n as i64
            })
        })
        .count();
    let ev: Vec<f64> = outs.iter().map(|o| o.events as f64).collect();
    let measured_results: usize = outs
        .iter()
        .map(|o| o.arrivals.iter().filter(|&&a| a > 0).count())
        .sum();
    let measured = outs.iter().filter(|o| !o.arrivals.is_empty()).count();
    println!(
        "    {subs} subscribers: job {wall:.2}s after the gate opened; {done}/{subs} completed, {final_ok} saw the final counts, {} errors{}; events/subscriber median {}; {measured} measured subscribers received {measured_results} of {} results; delay after fetched_at median {:.0} ms p99 {:.0} ms; after the icon request median {:.0} ms p99 {:.0} ms; HWM {:.0} MB; CPU service {svc_cpu:.1}s, harness {harness_cpu:.1}s",
        errors.len(),
        errors
            .first()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        median(&ev),
        measured * n,
        median(&after_fetched),
        percentile(&after_fetched, 99.0),
        median(&after_icon),
        percentile(&after_icon, 99.0),
        mb(hwm)
    );
    Ok(Watched {
        wall,
        hwm_mb: mb(hwm),
        rss_idle_mb: mb(rss0),
        rss_subscribed_mb: mb(rss1),
        after_fetched,
        after_icon,
        complete: done == subs && final_ok == subs && measured_results == measured * n,
        events_median: median(&ev),
        largest: outs.iter().map(|o| o.largest).max().unwrap_or(0),
        svc_cpu,
        harness_cpu,
    })
}

/// Every result's `fetched_at` (unix µs) by site index, read back from the API.
async fn fetched_at(ctx: &Ctx, d: &Deployment, id: &str, n: usize) -> Result<Vec<i64>> {
    let mut fetched = vec![0i64; n];
    for r in all_results(ctx, d, id).await? {
        if let (Some(i), Some(t)) = (
            r["domain"].as_str().and_then(site_index),
            r["fetched_at"].as_str(),
        ) && i < n
        {
            fetched[i] = chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.timestamp_micros())
                .unwrap_or(0);
        }
    }
    Ok(fetched)
}

pub(super) async fn sc_subscribers(ctx: &mut Ctx) -> Result<()> {
    let n = ctx.opts.domains;
    let subs = ctx.opts.subscribers;
    let mut ratios = Vec::new();
    let mut alone_walls = Vec::new();
    let mut walls = Vec::new();
    let mut hwms = Vec::new();
    let mut alone_hwms = Vec::new();
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut icon_p99s = Vec::new();
    let mut rss = Vec::new();
    let mut events = Vec::new();
    let mut largest = 0;
    let mut complete_all = true;
    let mut cpu = Vec::new();
    for _ in 0..ctx.opts.runs {
        let alone = watched_job(ctx, n, 0).await?;
        let watched = watched_job(ctx, n, subs).await?;
        ratios.push(watched.wall / alone.wall);
        alone_walls.push(alone.wall);
        walls.push(watched.wall);
        alone_hwms.push(alone.hwm_mb);
        hwms.push(watched.hwm_mb);
        p50s.push(median(&watched.after_fetched));
        p99s.push(percentile(&watched.after_fetched, 99.0));
        icon_p99s.push(percentile(&watched.after_icon, 99.0));
        rss.push((watched.rss_idle_mb, watched.rss_subscribed_mb));
        events.push(watched.events_median);
        largest = largest.max(watched.largest);
        complete_all &= watched.complete;
        cpu.push([
            alone.svc_cpu,
            watched.svc_cpu,
            alone.harness_cpu,
            watched.harness_cpu,
        ]);
    }
    let cpu_median = |i: usize| median(&cpu.iter().map(|c| c[i]).collect::<Vec<_>>());
    let (ratio, p99, hwm) = (median(&ratios), median(&p99s), median(&hwms));
    ctx.row(
        &format!("{n}-domain job with {subs} jobProgress subscribers vs with none (wall)"),
        format!(
            "{ratio:.2}× ({:.2}s vs {:.2}s; CPU of the service {:.1}s vs {:.1}s, of the harness's fake internet and subscribers {:.1}s vs {:.1}s)",
            median(&walls),
            median(&alone_walls),
            cpu_median(1),
            cpu_median(0),
            cpu_median(3),
            cpu_median(2),
        ),
        "≤ 1.3×",
        Some(ratio <= 1.3),
    );
    ctx.row(
        &format!("peak service RSS with {subs} subscribers"),
        format!(
            "{hwm:.0} MB (alone {:.0} MB; {:.0} MB idle → {:.0} MB with all subscribed; largest event {:.0} KB)",
            median(&alone_hwms),
            median(&rss.iter().map(|r| r.0).collect::<Vec<_>>()),
            median(&rss.iter().map(|r| r.1).collect::<Vec<_>>()),
            largest as f64 / 1024.0,
        ),
        "≤ 250 MB",
        Some(hwm <= 250.0),
    );
    ctx.row(
        &format!("event delay to {subs} subscribers, p99 (p50)"),
        format!(
            "{p99:.0} ms ({:.0} ms) from the result's fetched_at, an upper bound of commit→subscriber; p99 {:.0} ms from the icon request; {:.0} events per subscriber (median); every subscriber completed with the final counts and every result: {}",
            median(&p50s),
            median(&icon_p99s),
            median(&events),
            if complete_all { "yes" } else { "NO" },
        ),
        "≤ 250 ms",
        Some(p99 <= 250.0 && complete_all),
    );
    Ok(())
}
