//! The `two-clients` scenario (issue 28): is the service fair to every client, and polite
//! across its fleet?
//!
//! Client alpha submits `--big` sites of a slow web (`aN.alpha.test`, each with the slow
//! web's heavy-tailed latency, see `slow_web::draw_latency`); [`BETA_AFTER`] later client
//! beta submits [`BETA_SITES`] fast ones (`bN.beta.test`). The figure is beta's wait, from its
//! `POST /jobs` to its job finished, against what the same job needs on the idle service
//! (measured first, on the same deployment). Then alpha is cancelled and the next deployment
//! starts clean: embedded SQLite first, then the fleet (PostgreSQL + Redis, `serve
//! --no-worker` and two workers).
//!
//! Every [`CDN_EVERY`]th site of alpha links its icon on one host, [`CDN_HOST`] (a CDN that
//! serves many sites' icons), which answers after [`CDN_LATENCY`] and counts the requests in
//! flight at it: the most at once, against `FETCH_PER_HOST_CONCURRENCY`, says whether the
//! per-host limit holds for the whole deployment or only per process.
//!
//! Every name resolves to the one loopback address (`FETCH_RESOLVE=*=127.0.0.1:PORT`, so the
//! harness lifts the per-address limit) and the sites are told apart by `Host`.
//!
//! With `--baseline-bin PATH`, the scenario also times one bulk job (`--domains` sites of the
//! plain fake internet, no latency) on this build and on that one, interleaved, `--runs` times
//! each, on both databases, and reports the ratio of the rates.

use super::*;

/// The seed of alpha's latencies.
const SEED: u64 = 28;
/// Beta's sites.
const BETA_SITES: usize = 20;
/// The latency of every beta site, per response.
const BETA_LATENCY: Duration = Duration::from_millis(100);
/// How long after alpha's job is created beta submits its own.
const BETA_AFTER: Duration = Duration::from_secs(3);
/// One alpha site in this many links its icon on the CDN.
const CDN_EVERY: usize = 10;
/// The CDN's latency: slow enough that one process's share of alpha keeps more requests
/// waiting for it than the per-host limit lets through, so the limit is reached, not just
/// respected.
const CDN_LATENCY: Duration = Duration::from_millis(400);
/// The host serving the icons of every `CDN_EVERY`th alpha site.
const CDN_HOST: &str = "cdn.alpha.test";
/// Alpha's sites in the slow web's bulk throughput figure (`--baseline-bin`).
const SLOW_BULK: usize = 2000;
/// Alpha runs at least this long before it is cancelled, so that the CDN's count sees the
/// deployment at full load even when beta is done at once.
const ALPHA_AT_LEAST: Duration = Duration::from_secs(30);

/// What a `Host` header names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Site {
    Alpha(usize),
    Beta(usize),
    Cdn,
}

impl Site {
    fn parse(host: &str) -> Option<Self> {
        let host = host.split(':').next().unwrap_or(host);
        if host == CDN_HOST {
            return Some(Site::Cdn);
        }
        let number = |prefix: char, suffix: &str| -> Option<usize> {
            host.strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse()
                .ok()
        };
        number('a', ".alpha.test")
            .map(Site::Alpha)
            .or_else(|| number('b', ".beta.test").map(Site::Beta))
    }
}

/// The two clients' web: alpha's slow sites, beta's fast ones, and the CDN with its count.
pub(crate) struct Web {
    /// Alpha's site `i` answers every request after `alpha[i]`.
    alpha: Vec<Duration>,
    /// Requests in flight at the CDN host.
    cdn: slow_web::Load,
    png: Bytes,
    /// Home pages asked of alpha's sites below [`Web::counted`] (the `watches` scenario's
    /// watched sites: each re-check asks for one).
    pub(crate) homes: std::sync::atomic::AtomicUsize,
    counted: usize,
    /// Alpha's sites in this range answer without latency and serve `other_png` once
    /// `flipped` is set: an icon that changed between two checks.
    flips: std::ops::Range<usize>,
    pub(crate) flipped: std::sync::atomic::AtomicBool,
    other_png: Bytes,
}

impl Web {
    /// A web for `n` alpha sites; the same seed gives the same latencies.
    fn new(n: usize) -> Self {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
        Self {
            alpha: (0..n).map(|_| slow_web::draw_latency(&mut rng)).collect(),
            cdn: slow_web::Load::default(),
            png: Bytes::from(png32()),
            homes: Default::default(),
            counted: 0,
            flips: 0..0,
            flipped: Default::default(),
            other_png: Bytes::new(),
        }
    }

    /// A web of `n` alpha sites that counts the home pages asked of the first `counted`,
    /// and whose sites in `flips` change their icon when told to.
    pub(crate) fn counting(n: usize, counted: usize, flips: std::ops::Range<usize>) -> Self {
        Self {
            counted,
            flips,
            // The same picture with a text chunk: other bytes, so another hash.
            other_png: net::distinct_png(&png32(), 1),
            ..Self::new(n)
        }
    }

    /// Alpha's sites `range`, by name.
    pub(crate) fn alpha_range(&self, range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("a{i}.alpha.test")).collect()
    }

    fn alpha_names(&self) -> Vec<String> {
        self.alpha_range(0..self.alpha.len())
    }

    fn beta_names() -> Vec<String> {
        (0..BETA_SITES).map(|i| format!("b{i}.beta.test")).collect()
    }

    /// Alpha's sites whose icon is on the CDN.
    fn cdn_sites(&self) -> usize {
        self.alpha.len().div_ceil(CDN_EVERY)
    }

    /// The answer to `path` on `host`, after that host's latency.
    pub(crate) async fn answer(&self, host: &str, path: &str) -> (u16, &'static str, Bytes) {
        let not_found = (404, "text/plain", Bytes::from_static(b"not found"));
        let html = |s: String| (200, "text/html; charset=utf-8", Bytes::from(s));
        let png = (200, "image/png", self.png.clone());
        match Site::parse(host) {
            Some(Site::Cdn) => {
                let _in_flight = self.cdn.enter();
                tokio::time::sleep(CDN_LATENCY).await;
                if path.ends_with(".png") {
                    png
                } else {
                    not_found
                }
            }
            Some(Site::Alpha(i)) if i < self.alpha.len() => {
                // The sites that change answer at once, so every one of them has been seen
                // before the change by the time the scenario makes it.
                if !self.flips.contains(&i) {
                    tokio::time::sleep(self.alpha[i]).await;
                }
                if path == "/" && i < self.counted {
                    self.homes
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if path == "/favicon.png"
                    && self.flips.contains(&i)
                    && self.flipped.load(std::sync::atomic::Ordering::Relaxed)
                {
                    return (200, "image/png", self.other_png.clone());
                }
                match path {
                    // The sites that change keep their icon at home, where the change is.
                    "/" if i % CDN_EVERY == 0 && !self.flips.contains(&i) => html(HOME.replace(
                        "href=\"/favicon.png\"",
                        &format!("href=\"http://{CDN_HOST}/a{i}.png\""),
                    )),
                    "/" => html(HOME.to_owned()),
                    "/favicon.png" => png,
                    _ => not_found,
                }
            }
            Some(Site::Beta(_)) => {
                tokio::time::sleep(BETA_LATENCY).await;
                match path {
                    "/" => html(HOME.to_owned()),
                    "/favicon.png" => png,
                    _ => not_found,
                }
            }
            _ => not_found,
        }
    }
}

/// Beta behind alpha on both databases, then, with `--baseline-bin`, bulk throughput against
/// the baseline.
pub(crate) async fn sc_two_clients(ctx: &mut Ctx) -> Result<()> {
    beta_behind_alpha(ctx, "embedded SQLite", 1, embedded()).await?;
    beta_behind_alpha(
        ctx,
        "fleet: PostgreSQL + Redis, 1 API + 2 workers",
        2,
        fleet(),
    )
    .await?;
    bulk_throughput(ctx).await
}

/// One fresh deployment: beta alone, then alpha's big job and beta's again behind it; the
/// CDN's most requests in flight meanwhile; alpha cancelled at the end.
async fn beta_behind_alpha(
    ctx: &mut Ctx,
    label: &str,
    working: usize,
    o: DeployOpts<'static>,
) -> Result<()> {
    let big = ctx.opts.big;
    let web = Arc::new(Web::new(big));
    let net = clients_net(ctx, &web).await?;
    let d = ctx.deploy(Some(&net), o).await?;
    let (http, base) = (ctx.http.clone(), d.base.clone());
    let betas = Web::beta_names();
    let beta_limit = Duration::from_secs(120);

    let t = Instant::now();
    let id = job_id(&post_job_as(&http, &base, "beta", &betas, None).await?);
    wait_job(&http, &base, &id, beta_limit).await?;
    let alone = t.elapsed().as_secs_f64();

    let t_alpha = Instant::now();
    let alpha = job_id(&post_job_as(&http, &base, "alpha", &web.alpha_names(), None).await?);
    let alpha_create = t_alpha.elapsed().as_secs_f64();
    // Wall-clock: the real service has to start on alpha's queue before beta arrives.
    tokio::time::sleep(BETA_AFTER).await;
    let t_beta = Instant::now();
    let beta = job_id(&post_job_as(&http, &base, "beta", &betas, None).await?);
    // Behind a FIFO, beta waits for alpha's whole queue: allow it that long.
    let finished = wait_job(
        &http,
        &base,
        &beta,
        Duration::from_secs(120 + big as u64 / 50),
    )
    .await;
    let waited = t_beta.elapsed().as_secs_f64();
    let alpha_then = get_job(&http, &base, &alpha).await?;
    // Wall-clock: the CDN's count needs the deployment under alpha's load for a while.
    if let Some(rest) = ALPHA_AT_LEAST.checked_sub(t_alpha.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let most = web.cdn.most();
    let alpha_ran = t_alpha.elapsed().as_secs_f64();
    let alpha_end = get_job(&http, &base, &alpha).await?;
    cancel(&http, &base, &alpha).await?;

    let done = |j: &Value| j["completed"].as_i64().unwrap_or(0) + j["failed"].as_i64().unwrap_or(0);
    let figure = format!(
        "two clients, {label}: beta's wait ({BETA_SITES} sites of {} ms), submitted {} s after alpha's {big} slow sites (one run)",
        BETA_LATENCY.as_millis(),
        BETA_AFTER.as_secs()
    );
    let context = format!(
        "alpha had {} of {big} finished then; alpha's job created in {alpha_create:.1}s",
        done(&alpha_then)
    );
    match finished {
        Ok(job) => {
            let ok = job["completed"].as_i64() == Some(BETA_SITES as i64);
            ctx.row(
                &figure,
                format!(
                    "{waited:.1}s against {alone:.2}s alone ({:.0}×; {} of {BETA_SITES} completed); {context}",
                    waited / alone,
                    job["completed"]
                ),
                "≤ alone + 5 s, every site completed",
                Some(ok && waited <= alone + 5.0),
            );
        }
        Err(e) => ctx.row(
            &figure,
            format!("not finished after {waited:.0}s ({alone:.2}s alone): {e:#}; {context}"),
            "≤ alone + 5 s, every site completed",
            Some(false),
        ),
    }
    let limit = favicon_finder::finder::FinderConfig::default().per_host_concurrency;
    ctx.row(
        &format!(
            "two clients, {label}: most requests in flight at one host ({CDN_HOST}, the icons of {} of alpha's sites, {} ms each; one run)",
            web.cdn_sites(),
            CDN_LATENCY.as_millis()
        ),
        format!(
            "{most}; FETCH_PER_HOST_CONCURRENCY {limit} (default), {working} working process{}; counted over alpha's first {alpha_ran:.0}s ({} of its sites finished)",
            if working == 1 { "" } else { "es" },
            done(&alpha_end)
        ),
        &format!("≤ {limit}"),
        Some(most <= limit),
    );
    Ok(())
}

/// One bulk job on this build and on `--baseline-bin`, interleaved, on both databases: the
/// ratio of the rates.
async fn bulk_throughput(ctx: &mut Ctx) -> Result<()> {
    let Some(baseline) = ctx.opts.baseline_bin.clone() else {
        ctx.note(
            "two-clients: no `--baseline-bin`, so no bulk throughput against a baseline.".into(),
        );
        return Ok(());
    };
    let n = ctx.opts.domains;
    let net = plain_net(ctx, n, Duration::ZERO).await?;
    let deployments: [(&str, MakeDeploy); 2] = [
        ("embedded SQLite", embedded),
        ("fleet: PostgreSQL + Redis, 1 API + 2 workers", fleet),
    ];
    for (label, mk) in deployments {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..ctx.opts.runs {
            // Interleaved, so that a change in the machine's load falls on both builds alike.
            for (bin, runs) in [(&ctx.bin, &mut ours), (&baseline, &mut theirs)] {
                println!("    {}:", bin.display());
                let d = ctx.deploy_bin(bin, Some(&net), mk()).await?;
                runs.push(timed_job(ctx, &net, &d, n, None).await?.0);
            }
        }
        let ((rate, wall), (base_rate, base_wall)) = (summarize(&ours), summarize(&theirs));
        let ratio = rate / base_rate;
        // Each run against the baseline's run next to it: on a shared machine the spread of
        // these says more about the noise than the medians do.
        let pairs: Vec<String> = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| format!("{:.2}", a.rate() / b.rate()))
            .collect();
        let cpu = |runs: &[RunOut]| median(&runs.iter().map(|r| r.svc_cpu).collect::<Vec<_>>());
        ctx.row(
            &format!(
                "two clients: bulk throughput, {label}, one job of {n} sites, this build / `--baseline-bin`"
            ),
            format!(
                "{ratio:.3}× ({rate:.0}/s against {base_rate:.0}/s; wall {wall:.2}s against {base_wall:.2}s; service CPU {:.1}s against {:.1}s; run by run {})",
                cpu(&ours),
                cpu(&theirs),
                pairs.join(", ")
            ),
            "≥ 0.95×",
            Some(ratio >= 0.95),
        );
    }
    for (label, mk) in deployments {
        slow_bulk(ctx, &baseline, label, mk).await?;
    }
    ctx.note(format!(
        "two-clients: the baseline of the bulk throughput ratio was {}.",
        baseline.display()
    ));
    Ok(())
}

/// The fake internet serving the two clients' `web` on loopback.
pub(crate) async fn clients_net(ctx: &Ctx, web: &Arc<Web>) -> Result<FakeInternet> {
    FakeInternet::start(
        NetOpts {
            tls: false,
            latency: Duration::ZERO,
            sites: 0,
            low_ports: false,
            gated: false,
            web: Some(net::Web::Clients(web.clone())),
        },
        ctx.tmp.path(),
    )
    .await
}

/// One job of [`SLOW_BULK`] of alpha's slow sites alone, on this build and on `baseline`:
/// on a slow web a lone job's rate follows the slots it may hold, which a fast web hides.
async fn slow_bulk(ctx: &mut Ctx, baseline: &Path, label: &str, mk: MakeDeploy) -> Result<()> {
    let web = Arc::new(Web::new(SLOW_BULK));
    let net = clients_net(ctx, &web).await?;
    let mut rates = Vec::new();
    for bin in [ctx.bin.as_path(), baseline] {
        let d = ctx.deploy_bin(bin, Some(&net), mk()).await?;
        let t = Instant::now();
        let created = post_job_as(&ctx.http, &d.base, "alpha", &web.alpha_names(), None).await?;
        wait_job(
            &ctx.http,
            &d.base,
            &job_id(&created),
            Duration::from_secs(600),
        )
        .await?;
        let rate = SLOW_BULK as f64 / t.elapsed().as_secs_f64();
        println!(
            "    {}: {SLOW_BULK} slow sites at {rate:.0}/s",
            bin.display()
        );
        rates.push(rate);
    }
    let ratio = rates[0] / rates[1];
    ctx.row(
        &format!(
            "two clients: bulk throughput on the slow web, {label}, one job of {SLOW_BULK} of alpha's sites alone (one run each), this build / `--baseline-bin`"
        ),
        format!(
            "{ratio:.3}× ({:.0}/s against {:.0}/s)",
            rates[0], rates[1]
        ),
        "≥ 0.95×",
        Some(ratio >= 0.95),
    );
    Ok(())
}

/// What makes a deployment's options afresh for each run.
type MakeDeploy = fn() -> DeployOpts<'static>;

fn job_id(created: &Value) -> String {
    created["job_id"].as_str().unwrap_or_default().to_owned()
}

/// `GET /jobs/{id}`.
async fn get_job(http: &reqwest::Client, base: &str, id: &str) -> Result<Value> {
    Ok(http
        .get(format!("{base}/jobs/{id}"))
        .send()
        .await?
        .json()
        .await?)
}

/// `POST /jobs/{id}/cancel`, which wants a JSON body even when empty.
async fn cancel(http: &reqwest::Client, base: &str, id: &str) -> Result<()> {
    let r = http
        .post(format!("{base}/jobs/{id}/cancel"))
        .json(&json!({}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("cancelling job {id}: {}", r.status());
    }
    Ok(())
}
