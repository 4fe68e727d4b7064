//! The `concurrency` scenario (issue 29): how many domains in flight the machine sustains on
//! the slow web, to choose `WORKER_CONCURRENCY`'s default from a curve rather than a guess.
//!
//! For each level (64, 256, 1,000, 2,000, 4,000, and the default if it is none of them; or
//! `CONCURRENCY_LEVELS=a,b,…`), a fresh embedded service with `WORKER_CONCURRENCY` at the level
//! and `WORKER_MAX_SHARE_PER_JOB=1`, so the one job holds every slot, runs one job of
//! [`DOMAINS_PER_SLOT`] × level names over the sweep's slow web (`slow_web::Web::sweep`: the
//! slow web's log-normal latencies, no silent hosts). Every name is on one address through
//! `FETCH_RESOLVE=*=…` (one environment string cannot list 48,000 names), so the sweep lifts
//! `FETCH_PER_ADDRESS_CONCURRENCY` (the `slow-web` scenario measures that limit on a web of
//! many addresses).
//!
//! The service's `/metrics` and `/proc` are sampled every [`SAMPLE_EVERY`]. The figures are
//! taken over the steady part of the job: from when a level's worth of domains has finished
//! (the first wave is over) to when fewer than a level's worth are left (the slots start to
//! empty). Over that window: domains finished per second, the mean domain time (the finder's
//! own, `fetch_duration_seconds`), the domains in flight (the `in_flight_fetches` gauge,
//! averaged), the service's CPU (cores = CPU s ÷ wall s) and its RSS; the peak RSS (`VmHWM`)
//! is the whole process's, job creation included.
//!
//! The ideal at a level is level ÷ the mean domain time at the lowest level (the web's own
//! time plus the service's fixed cost per domain, on an idle machine): what the level would
//! give if every slot were always busy and a busy machine took no longer per domain. That
//! mean is the lowest level's domains in flight ÷ its rate (Little's law), not the average of
//! the domains finished in its window: a window of a dozen seconds after a cold start holds
//! the short domains and misses part of the heavy tail (a 4 s host takes 8 s), and that
//! average came out 10 % under the time a slot is really held.

use super::*;
use slow_web::Web;

/// The levels swept unless `CONCURRENCY_LEVELS` says otherwise.
const LEVELS: [usize; 5] = [64, 256, 1000, 2000, 4000];
/// Names per slot of a level: the steady window is then about ten mean domain times long.
const DOMAINS_PER_SLOT: usize = 12;
/// Names of a level at least: the lowest level's rate is every level's yardstick, so its
/// window is made longer (about 12 s) than ten domain times.
const MIN_NAMES: usize = 1500;
/// The seed of the sweep's latencies.
const SEED: u64 = 29;
/// How often `/metrics` and `/proc` are read.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// `FETCH_PER_ADDRESS_CONCURRENCY` for the sweep: every name is on one address.
const PER_ADDRESS_LIFTED: usize = 10_000;
/// The targets at the default: share of the ideal, cores, peak RSS (MB).
const TARGET_SHARE: f64 = 0.9;
const TARGET_CORES: f64 = 1.0;
const TARGET_MB: f64 = 300.0;

/// One reading of the service.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    at: f64,
    finished: f64,
    in_flight: f64,
    fetch_sum: f64,
    fetch_count: f64,
    cpu: f64,
    rss_kb: u64,
}

/// A level's figures over its steady window.
#[derive(Clone, Debug)]
struct Level {
    slots: usize,
    names: usize,
    /// The web's own mean domain time: two latencies per domain.
    web_time: f64,
    rate: f64,
    mean_time: f64,
    in_flight: f64,
    cores: f64,
    harness_cores: f64,
    window: f64,
    idle_mb: f64,
    rss_mb: f64,
    hwm_mb: f64,
    /// Final failures and retries so far (the web's dead hosts fail with `http_status`).
    failed: f64,
    retried: f64,
    /// Connections the web accepted per finished domain (the refused https attempt, and
    /// one for the page and its icon when the connection is reused).
    conns: f64,
}

/// The levels to sweep: `CONCURRENCY_LEVELS`, or [`LEVELS`] and the service's default.
fn levels() -> Result<Vec<usize>> {
    let mut v: Vec<usize> = match std::env::var("CONCURRENCY_LEVELS") {
        Ok(s) => s
            .split(',')
            .map(|x| x.trim().parse::<usize>().context("CONCURRENCY_LEVELS"))
            .collect::<Result<_>>()?,
        Err(_) => LEVELS
            .iter()
            .copied()
            .chain([favicon_finder::config::DEFAULT_WORKER_CONCURRENCY])
            .collect(),
    };
    v.retain(|&c| c > 0);
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// Raises this process's descriptor limit (the service inherits it) to what the largest
/// level needs: a socket per domain in flight on each side, twice for a page and its icon
/// over a refused https attempt, and room besides. Returns the soft limit now.
fn raise_nofile(largest: usize) -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let want = (3 * largest + 1024) as u64;
    let mut lim = getrlimit(Resource::Nofile);
    let current = lim.current.unwrap_or(u64::MAX);
    if current < want {
        lim.current = Some(lim.maximum.map_or(want, |m| m.min(want)));
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// The value of an unlabelled series, or the sum of a labelled one's series matching `keep`.
fn series(text: &str, name: &str, keep: impl Fn(&str) -> bool) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (metric, labels) = key.split_once('{').unwrap_or((key, ""));
            (metric == name && keep(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Reads the service once.
async fn sample(ctx: &Ctx, d: &Deployment, t0: Instant) -> Result<Sample> {
    let text = ctx
        .http
        .get(format!("{}/metrics", d.base))
        .send()
        .await?
        .text()
        .await?;
    let m = |name: &str| series(&text, &format!("favicon_finder_{name}"), |_| true);
    Ok(Sample {
        at: t0.elapsed().as_secs_f64(),
        finished: series(&text, "favicon_finder_domains_total", |l| {
            !l.contains("outcome=\"retry\"")
        }),
        in_flight: m("in_flight_fetches"),
        fetch_sum: m("fetch_duration_seconds_sum"),
        fetch_count: m("fetch_duration_seconds_count"),
        cpu: d.cpu(),
        rss_kb: d.api.rss_kb(),
    })
}

/// One level: a fresh service with `slots` slots, one job of `DOMAINS_PER_SLOT` × `slots`
/// names, read every `SAMPLE_EVERY` until it completes.
async fn run_level(ctx: &Ctx, bin: &Path, slots: usize) -> Result<Level> {
    let n = (slots * DOMAINS_PER_SLOT).max(MIN_NAMES);
    let web = Arc::new(Web::sweep(n, SEED));
    let net = FakeInternet::start(
        NetOpts {
            tls: false,
            latency: Duration::ZERO,
            sites: n,
            low_ports: false,
            gated: false,
            web: Some(net::Web::Slow(web.clone())),
        },
        ctx.tmp.path(),
    )
    .await?;
    let mut o = embedded();
    o.env = vec![
        ("WORKER_CONCURRENCY", slots.to_string()),
        ("WORKER_MAX_SHARE_PER_JOB", "1".into()),
        (
            "FETCH_PER_ADDRESS_CONCURRENCY",
            PER_ADDRESS_LIFTED.to_string(),
        ),
    ];
    let d = ctx.deploy_bin(bin, Some(&net), o).await?;
    let idle_kb = d.api.rss_kb();
    let names = web.names();
    let self0 = cpu_secs("self");
    let net0 = net.snapshot();
    let t0 = Instant::now();
    post_job(&ctx.http, &d.base, &names, None).await?;
    let mut samples = vec![sample(ctx, &d, t0).await?];
    let mut harness_cpu = vec![(0.0, self0)];
    let deadline = Instant::now() + job_limit(n);
    // Until the window's end has passed: the tail after it (the slowest sites, one by one)
    // says nothing about the level, and would make the sweep too long to be part of `all`.
    loop {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let s = sample(ctx, &d, t0).await?;
        samples.push(s);
        harness_cpu.push((t0.elapsed().as_secs_f64(), cpu_secs("self")));
        if (n as f64 - s.finished) < slots as f64 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{slots} slots: {} of {n} finished after {:?}",
                s.finished,
                job_limit(n)
            );
        }
    }
    let hwm_kb = d.api.hwm_kb();
    let seen = net.snapshot().minus(net0);
    let text = ctx
        .http
        .get(format!("{}/metrics", d.base))
        .send()
        .await?
        .text()
        .await?;
    let failed = series(&text, "favicon_finder_domains_total", |l| {
        l.contains("outcome=\"failed\"")
    });
    let retried = series(&text, "favicon_finder_domains_total", |l| {
        l.contains("outcome=\"retry\"")
    });
    let (s, e) = window(&samples, slots, n).with_context(|| {
        format!(
            "{slots} slots: no steady window in {} samples",
            samples.len()
        )
    })?;
    let (a, b) = (samples[s], samples[e]);
    let span = b.at - a.at;
    let inside = &samples[s..=e];
    let harness = |t: f64| {
        harness_cpu
            .iter()
            .min_by(|x, y| (x.0 - t).abs().total_cmp(&(y.0 - t).abs()))
            .map_or(0.0, |x| x.1)
    };
    let mut rss: Vec<f64> = inside.iter().map(|x| x.rss_kb as f64).collect();
    rss.sort_by(f64::total_cmp);
    Ok(Level {
        slots,
        names: n,
        web_time: 2.0 * web.mean_latency().as_secs_f64(),
        rate: (b.finished - a.finished) / span,
        mean_time: (b.fetch_sum - a.fetch_sum) / (b.fetch_count - a.fetch_count).max(1.0),
        in_flight: inside.iter().map(|x| x.in_flight).sum::<f64>() / inside.len() as f64,
        cores: (b.cpu - a.cpu) / span,
        harness_cores: (harness(b.at) - harness(a.at)) / span,
        window: span,
        idle_mb: mb(idle_kb),
        rss_mb: mb(median(&rss) as u64),
        hwm_mb: mb(hwm_kb),
        failed,
        retried,
        conns: seen.connections as f64 / samples.last().map_or(1.0, |x| x.finished.max(1.0)),
    })
}

/// The steady window's first and last samples: from the first with a level's worth finished
/// to the last with more than a level's worth left.
fn window(samples: &[Sample], slots: usize, n: usize) -> Option<(usize, usize)> {
    let slots = slots as f64;
    let s = samples.iter().position(|x| x.finished >= slots)?;
    let e = samples
        .iter()
        .rposition(|x| n as f64 - x.finished >= slots)?;
    (e > s).then_some((s, e))
}

/// One level's line, as it finishes.
fn print_level(which: &str, l: &Level) {
    println!(
        "    {which}: {} slots, {} names: {:.0} domains/s over {:.1}s, mean domain {:.0} ms \
         (web's own {:.0} ms), {:.0} in flight, {:.2} cores (harness {:.2}), RSS {:.0} MB \
         (idle {:.0}, peak {:.0}), {} failed, {} retried, {:.2} connections per domain; load {}",
        l.slots,
        l.names,
        l.rate,
        l.window,
        l.mean_time * 1e3,
        l.web_time * 1e3,
        l.in_flight,
        l.cores,
        l.harness_cores,
        l.rss_mb,
        l.idle_mb,
        l.hwm_mb,
        l.failed,
        l.retried,
        l.conns,
        loadavg()
    );
}

/// Sweeps the levels, then prints the curve and checks the targets at the default.
pub(super) async fn sc_concurrency(ctx: &mut Ctx) -> Result<()> {
    let levels = levels()?;
    let largest = levels.iter().copied().max().unwrap_or(0);
    let nofile = raise_nofile(largest);
    let mut out: Vec<Level> = Vec::new();
    // With `--baseline-bin`, each level runs on the earlier build first, then on this one.
    let mut before: Vec<Level> = Vec::new();
    for &c in &levels {
        if let Some(old) = ctx.opts.baseline_bin.clone() {
            let l = run_level(ctx, &old, c).await?;
            print_level("baseline", &l);
            before.push(l);
        }
        let l = run_level(ctx, &ctx.bin.clone(), c).await?;
        print_level("this build", &l);
        out.push(l);
    }
    if !before.is_empty() {
        let mut t = String::from(
            "The same levels on `--baseline-bin` and on this build, interleaved (baseline first):\n\n\
             | WORKER_CONCURRENCY | domains/s | in flight (avg) | service cores | RSS in window | peak RSS | connections per domain |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for (b, l) in before.iter().zip(&out) {
            let _ = writeln!(
                t,
                "| {} | {:.0} / {:.0} | {:.0} / {:.0} | {:.2} / {:.2} | {:.0} / {:.0} MB | {:.0} / {:.0} MB | {:.2} / {:.2} |",
                l.slots,
                b.rate,
                l.rate,
                b.in_flight,
                l.in_flight,
                b.cores,
                l.cores,
                b.rss_mb,
                l.rss_mb,
                b.hwm_mb,
                l.hwm_mb,
                b.conns,
                l.conns
            );
        }
        println!("{t}");
        ctx.notes.push(t);
    }
    let Some(base) = out.first().cloned() else {
        bail!("no level to sweep");
    };
    let t0 = base.in_flight / base.rate;
    let mut table = format!(
        "Concurrency on the slow web (seed {SEED}; {DOMAINS_PER_SLOT} names per slot, every name \
         answering; WORKER_MAX_SHARE_PER_JOB=1, FETCH_PER_ADDRESS_CONCURRENCY={PER_ADDRESS_LIFTED}; \
         ideal = slots ÷ the lowest level's mean domain time (its in flight ÷ its rate), {:.0} ms; \
         mean domain time = in flight ÷ rate, and the finder's own average over the window; RSS per in-flight domain = \
         (window RSS − the lowest level's) ÷ (in flight − the lowest level's); descriptors: soft \
         limit {nofile}):\n\n\
         | WORKER_CONCURRENCY | domains/s | ideal | achieved vs ideal | in flight (avg) | mean domain time (finder's) | \
         service cores | harness cores | RSS in window | peak RSS | RSS per in-flight domain |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        t0 * 1e3
    );
    for l in &out {
        let ideal = l.slots as f64 / t0;
        let per = if l.slots == base.slots {
            "-".to_owned()
        } else {
            format!(
                "{:.0} KB",
                (l.rss_mb - base.rss_mb) * 1024.0 / (l.in_flight - base.in_flight).max(1.0)
            )
        };
        let _ = writeln!(
            table,
            "| {} | {:.0} | {:.0} | {:.0} % | {:.0} | {:.0} ms ({:.0} ms) | {:.2} | {:.2} | {:.0} MB | {:.0} MB | {per} |",
            l.slots,
            l.rate,
            ideal,
            100.0 * l.rate / ideal,
            l.in_flight,
            1e3 * l.in_flight / l.rate,
            l.mean_time * 1e3,
            l.cores,
            l.harness_cores,
            l.rss_mb,
            l.hwm_mb
        );
    }
    println!("{table}");
    ctx.notes.push(table);
    for l in &out {
        let ideal = l.slots as f64 / t0;
        ctx.row(
            &format!("concurrency {}: domains/s, share of the ideal", l.slots),
            format!(
                "{:.0}/s, {:.0} % of {ideal:.0}; {:.2} cores, peak RSS {:.0} MB",
                l.rate,
                100.0 * l.rate / ideal,
                l.cores,
                l.hwm_mb
            ),
            "(the curve)",
            None,
        );
    }
    let default = favicon_finder::config::DEFAULT_WORKER_CONCURRENCY;
    if let Some(l) = out.iter().find(|l| l.slots == default) {
        let share = l.rate / (l.slots as f64 / t0);
        ctx.row(
            &format!("slow web at the default concurrency ({default})"),
            format!(
                "{:.0} % of the ideal, {:.2} cores, peak RSS {:.0} MB",
                100.0 * share,
                l.cores,
                l.hwm_mb
            ),
            &format!(
                "≥ {:.0} %, ≤ {TARGET_CORES} core, ≤ {TARGET_MB} MB",
                100.0 * TARGET_SHARE
            ),
            Some(share >= TARGET_SHARE && l.cores <= TARGET_CORES && l.hwm_mb <= TARGET_MB),
        );
    }
    Ok(())
}
