//! The `slow-web` scenario (issue 25): one job over a web that behaves like the real one,
//! where every host has a known truth, on a fresh embedded service watched by two
//! `jobProgress` subscribers.
//!
//! The web is `--web-hosts` names (2,000) on loopback, each resolved by its own
//! `FETCH_RESOLVE` entry (`siteN.slow.test=127.77.X.Y:PORT`) to an address of its own or to one
//! shared with many names (shared hosting), so the service's per-address limit
//! (`FETCH_PER_ADDRESS_CONCURRENCY`) applies as it would outside. Every address has its own
//! listener, which counts the requests in flight at it. `FETCH_ALLOW_PRIVATE_NETWORKS=true`
//! is what lets the service's SSRF guard connect to loopback at all.
//!
//! Each host answers every request after its own latency, drawn once from a log-normal
//! distribution (median 150 ms, σ 1, at most 4 s; seeded, so runs are comparable). The kinds,
//! shuffled over the names:
//!
//! The 300 names of the first shared address come one after another in the job (the others
//! are shuffled), so that the service's per-address limit is reached and not just respected.
//!
//! | kind | share | truth |
//! | --- | --- | --- |
//! | home page linking `/favicon.png`, own address | the rest (58.5 %) | `success` |
//! | the same on a shared address (300, 100 and 50 names of 2,000) | 22.5 % | `success` |
//! | no icon declared, `/favicon.ico` only | 10 % | `success` |
//! | dead: everything 404 | 5 % | `http_status` |
//! | accepts connections, never answers (TLS handshake included) | 2 % | `timeout` |
//! | home page answers, the icon it links (and everything else) never does | 2 % | `timeout` |
//!
//! A dead host's truth is `http_status`, not `no_icon`: `src/model/outcome.rs` gives
//! `http_status` to "the home page answered with an HTTP error status", and `no_icon` to a site
//! that worked without a real image. The https attempt is refused at once everywhere (plain
//! HTTP, as in the other scenarios), so the latency is paid per HTTP response only.

use super::*;
use std::net::{IpAddr, Ipv4Addr};
use tokio::io::AsyncReadExt;

/// The seed of the latencies and of the kinds' order.
const SEED: u64 = 25;
/// The median latency of a host.
const MEDIAN_LATENCY: Duration = Duration::from_millis(150);
/// σ of the latency's logarithm: p90 ≈ 0.5 s, p99 ≈ 1.5 s.
const LATENCY_SIGMA: f64 = 1.0;
/// The slowest host: a page and an icon of this latency fit in the service's 15 s per domain.
const MAX_LATENCY: Duration = Duration::from_secs(4);
/// How long a silent host holds a request before giving up itself (the service gives up
/// long before; its requests end when it closes the connection).
const SILENT_FOR: Duration = Duration::from_secs(600);
/// Subscribers watching the job.
const SUBSCRIBERS: usize = 2;
/// The job's limit; retries of silent hosts (three tries, backoff) take about a minute.
const JOB_LIMIT: Duration = Duration::from_secs(600);
/// Shares of the web per 1,000 names: silent, icon silent, dead, `/favicon.ico` only.
const SILENT: usize = 20;
const ICON_SILENT: usize = 20;
const DEAD: usize = 50;
const FAVICON_ONLY: usize = 100;
/// Names per shared address, per 1,000 names: 300, 100 and 50 of 2,000.
const SHARED: [usize; 3] = [150, 50, 25];
/// Bytes of `FETCH_RESOLVE` allowed: one environment string may hold at most 128 KiB.
const MAX_RESOLVE_BYTES: usize = 120 * 1024;

const HOME_BARE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>A bench site</title>\
</head><body><h1>Hello</h1><p>A synthetic site without icon links.</p></body></html>";

/// What a host does, and so what the service should say about it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    /// A home page linking `/favicon.png`, which exists; an address of its own.
    Linked,
    /// As `Linked`, on an address shared with many names.
    Shared,
    /// A home page without icon links, and `/favicon.ico`.
    FaviconOnly,
    /// Everything 404.
    Dead,
    /// Accepts connections and never answers.
    Silent,
    /// The home page answers; the icon it links, and every other path, never does.
    IconSilent,
}

impl Kind {
    /// Every kind, in the report's order.
    const ALL: [Kind; 6] = [
        Kind::Linked,
        Kind::Shared,
        Kind::FaviconOnly,
        Kind::Dead,
        Kind::Silent,
        Kind::IconSilent,
    ];

    /// The category the service should end in (`success` for a found icon).
    fn truth(self) -> &'static str {
        match self {
            Kind::Linked | Kind::Shared | Kind::FaviconOnly => "success",
            Kind::Dead => "http_status",
            Kind::Silent | Kind::IconSilent => "timeout",
        }
    }

    /// The kind's row in the report.
    fn label(self) -> &'static str {
        match self {
            Kind::Linked => "links an icon, own address",
            Kind::Shared => "links an icon, shared hosting",
            Kind::FaviconOnly => "`/favicon.ico` only",
            Kind::Dead => "dead (everything 404)",
            Kind::Silent => "accepts, never answers",
            Kind::IconSilent => "linked icon never answers",
        }
    }

    /// The path of the icon the service should pick.
    fn icon_path(self) -> Option<&'static str> {
        match self {
            Kind::Linked | Kind::Shared => Some("/favicon.png"),
            Kind::FaviconOnly => Some("/favicon.ico"),
            _ => None,
        }
    }
}

/// One host of the web.
struct Host {
    kind: Kind,
    addr: IpAddr,
    latency: Duration,
}

/// Requests in flight at one address (or one host): now, and the most at once.
#[derive(Default)]
pub(super) struct Load {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Load {
    /// Counts one request in flight until the guard is dropped.
    pub(super) fn enter(&self) -> InFlight<'_> {
        let now = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.most.fetch_max(now, Ordering::Relaxed);
        InFlight(Some(self))
    }

    /// The most requests in flight at once so far.
    pub(super) fn most(&self) -> usize {
        self.most.load(Ordering::Relaxed)
    }
}

/// A request counted in flight at its address until dropped (hyper drops a request's future
/// when the client closes the connection, so abandoned requests stop counting).
pub(super) struct InFlight<'a>(Option<&'a Load>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.0 {
            l.now.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The slow web: its hosts (`siteN.slow.test` is `hosts[N]`), their addresses and the load
/// measured at each.
pub(super) struct Web {
    hosts: Vec<Host>,
    /// Every address with its load and whether its host is silent (a silent host has an
    /// address of its own).
    addresses: Vec<(IpAddr, Load, bool)>,
    png: Bytes,
    ico: Bytes,
    /// Every name on the one address, through `FETCH_RESOLVE=*=…` (the `concurrency` sweep:
    /// more names than one environment string can list).
    wildcard: bool,
}

/// The `k`-th address of the web, on loopback away from 127.0.0.1.
fn address(k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 77, (k / 250) as u8, (k % 250 + 1) as u8))
}

/// A one-entry ICO holding `png` (PNG-compressed entries are valid ICO since Vista).
fn ico_of(png: &[u8], side: u8) -> Bytes {
    let mut v = vec![0, 0, 1, 0, 1, 0, side, side, 0, 0, 1, 0, 32, 0];
    v.extend_from_slice(&(png.len() as u32).to_le_bytes());
    v.extend_from_slice(&22u32.to_le_bytes());
    v.extend_from_slice(png);
    Bytes::from(v)
}

/// A host's latency, the slow web's heavy tail: log-normal around `MEDIAN_LATENCY` (σ
/// `LATENCY_SIGMA`), at most `MAX_LATENCY`.
pub(super) fn draw_latency(rng: &mut impl rand::Rng) -> Duration {
    // Box-Muller: exp(σ·z) around the median.
    let (u1, u2) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    MEDIAN_LATENCY
        .mul_f64((LATENCY_SIGMA * z).exp())
        .min(MAX_LATENCY)
}

impl Web {
    /// A web of `n` hosts; the same `seed` gives the same web.
    pub(super) fn new(n: usize, seed: u64) -> Self {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let share = |per_mille: usize| n * per_mille / 1000;
        // (kind, shared address) per name, then shuffled so that no kind comes in a run.
        let mut plan: Vec<(Kind, Option<usize>)> = Vec::with_capacity(n);
        for (k, per_mille) in [
            (Kind::Silent, SILENT),
            (Kind::IconSilent, ICON_SILENT),
            (Kind::Dead, DEAD),
            (Kind::FaviconOnly, FAVICON_ONLY),
        ] {
            plan.extend(std::iter::repeat_n((k, None), share(per_mille)));
        }
        for (g, per_mille) in SHARED.iter().enumerate() {
            plan.extend(std::iter::repeat_n(
                (Kind::Shared, Some(g)),
                share(*per_mille),
            ));
        }
        plan.truncate(n);
        plan.resize(n, (Kind::Linked, None));
        plan.shuffle(&mut rng);
        // The first shared address's names come one after another, a quarter into the job, as
        // in a list sorted by provider: spread out, about 10 of the 64 workers would be there
        // at once and the per-address limit would never be reached, so never measured.
        let (run, mut plan): (Vec<_>, Vec<_>) = plan.into_iter().partition(|p| p.1 == Some(0));
        let at = plan.len() / 4;
        plan.splice(at..at, run);
        let mut addresses: Vec<(IpAddr, Load, bool)> = (0..SHARED.len())
            .map(|g| (address(g), Load::default(), false))
            .collect();
        let hosts = plan
            .into_iter()
            .map(|(kind, shared)| {
                let addr = match shared {
                    Some(g) => address(g),
                    None => {
                        let a = address(addresses.len());
                        addresses.push((a, Load::default(), kind == Kind::Silent));
                        a
                    }
                };
                Host {
                    kind,
                    addr,
                    latency: draw_latency(&mut rng),
                }
            })
            .collect();
        let png = png32();
        Self {
            hosts,
            addresses,
            ico: ico_of(&png, 32),
            png: Bytes::from(png),
            wildcard: false,
        }
    }

    /// The `concurrency` sweep's web: `n` hosts that all answer (no silent ones, whose 15 s
    /// deadlines and retries would make the job's length theirs), every name on one address and
    /// one listener, with the slow web's latencies. Per 20 names, in turn: one dead, two
    /// `/favicon.ico` only, the rest linking an icon; so the web of `n` names is the start of
    /// every larger one, and each level sees the same mix.
    pub(super) fn sweep(n: usize, seed: u64) -> Self {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let hosts = (0..n)
            .map(|i| Host {
                kind: match i % 20 {
                    0 => Kind::Dead,
                    1 | 2 => Kind::FaviconOnly,
                    _ => Kind::Linked,
                },
                addr: address(0),
                latency: draw_latency(&mut rng),
            })
            .collect();
        let png = png32();
        Self {
            hosts,
            addresses: vec![(address(0), Load::default(), false)],
            ico: ico_of(&png, 32),
            png: Bytes::from(png),
            wildcard: true,
        }
    }

    /// The hosts' mean latency (a found domain costs two of them: its page and its icon).
    pub(super) fn mean_latency(&self) -> Duration {
        let sum: Duration = self.hosts.iter().map(|h| h.latency).sum();
        sum / self.hosts.len().max(1) as u32
    }

    /// Every host's name, in index order.
    pub(super) fn names(&self) -> Vec<String> {
        (0..self.hosts.len())
            .map(|i| format!("site{i}.slow.test"))
            .collect()
    }

    /// Every address a listener must serve.
    pub(super) fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addresses.iter().map(|a| a.0)
    }

    /// `FETCH_RESOLVE`: every name to its address, on the port its listener got.
    pub(super) fn resolve(&self, ports: &[(IpAddr, u16)]) -> String {
        let port: std::collections::HashMap<IpAddr, u16> = ports.iter().copied().collect();
        if self.wildcard {
            return format!("*={}:{}", address(0), port[&address(0)]);
        }
        self.names()
            .iter()
            .zip(&self.hosts)
            .map(|(name, h)| format!("{name}={}:{}", h.addr, port[&h.addr]))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn load(&self, addr: IpAddr) -> Option<&Load> {
        self.addresses.iter().find(|a| a.0 == addr).map(|a| &a.1)
    }

    /// Counts one request in flight at `addr` until the guard is dropped.
    pub(super) fn enter(&self, addr: IpAddr) -> InFlight<'_> {
        self.load(addr).map_or(InFlight(None), Load::enter)
    }

    /// Whether `addr` is a silent host's.
    pub(super) fn is_silent(&self, addr: IpAddr) -> bool {
        self.addresses.iter().any(|a| a.0 == addr && a.2)
    }

    /// A silent host: takes whatever the service sends and never answers, until the service
    /// closes the connection. Counted in flight meanwhile, as the service holds a slot.
    pub(super) async fn hold(&self, mut stream: TcpStream, addr: IpAddr) {
        let _in_flight = self.enter(addr);
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(SILENT_FOR, async {
            while stream.read(&mut buf).await.unwrap_or(0) > 0 {}
        })
        .await;
    }

    /// The answer of host `host` (a `Host` header) to `path`, after the host's latency;
    /// never, for what a host never answers.
    pub(super) async fn answer(&self, host: &str, path: &str) -> (u16, &'static str, Bytes) {
        let not_found = (404, "text/plain", Bytes::from_static(b"not found"));
        let Some(h) = site_index(host).and_then(|i| self.hosts.get(i)) else {
            return not_found;
        };
        tokio::time::sleep(h.latency).await;
        let html = |s: &'static str| {
            (
                200,
                "text/html; charset=utf-8",
                Bytes::from_static(s.as_bytes()),
            )
        };
        match (h.kind, path) {
            (Kind::Linked | Kind::Shared | Kind::IconSilent, "/") => html(HOME),
            (Kind::Linked | Kind::Shared, "/favicon.png") => (200, "image/png", self.png.clone()),
            (Kind::FaviconOnly, "/") => html(HOME_BARE),
            (Kind::FaviconOnly, "/favicon.ico") => (200, "image/x-icon", self.ico.clone()),
            (Kind::Silent | Kind::IconSilent, _) => {
                tokio::time::sleep(SILENT_FOR).await;
                not_found
            }
            _ => not_found,
        }
    }

    /// The most requests in flight at one address: (count, address, names on it).
    fn busiest(&self) -> (usize, IpAddr, usize) {
        self.addresses
            .iter()
            .map(|(a, l, _)| {
                let names = self.hosts.iter().filter(|h| h.addr == *a).count();
                (l.most(), *a, names)
            })
            .max_by_key(|&(most, _, names)| (most, names))
            .unwrap_or((0, address(0), 0))
    }
}

#[path = "slow_web/results.rs"]
mod results;
use results::categories;

/// One job over the slow web, watched by two subscribers: the truth against the results, the
/// subscribers' view, the load per address and the service's peak RSS.
pub(super) async fn sc_slow_web(ctx: &mut Ctx) -> Result<()> {
    let n = ctx.opts.web_hosts;
    let web = Arc::new(Web::new(n, SEED));
    let net = FakeInternet::start(
        NetOpts {
            tls: false,
            latency: Duration::ZERO,
            sites: n,
            low_ports: false,
            gated: true,
            web: Some(net::Web::Slow(web.clone())),
        },
        ctx.tmp.path(),
    )
    .await?;
    if net.resolve().len() > MAX_RESOLVE_BYTES {
        bail!(
            "FETCH_RESOLVE for {n} hosts is too long for one environment string; use fewer --web-hosts"
        );
    }
    let limit = favicon_finder::finder::FinderConfig::default().per_address_concurrency;
    let d = ctx.deploy(Some(&net), embedded()).await?;
    let names = web.names();
    let created = post_job(&ctx.http, &d.base, &names, None).await?;
    let id = created["job_id"].as_str().unwrap_or_default().to_owned();

    // The requests wait at the fake internet until both subscribers have their snapshot.
    let ready = Arc::new(AtomicUsize::new(0));
    let conn_gate = Arc::new(tokio::sync::Semaphore::new(SUBSCRIBERS));
    let subs: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            tokio::spawn(subscribers::subscriber(
                d.base.clone(),
                id.clone(),
                Some(n),
                ready.clone(),
                conn_gate.clone(),
            ))
        })
        .collect();
    let t_sub = Instant::now();
    while ready.load(Ordering::Relaxed) < SUBSCRIBERS && t_sub.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t0 = Instant::now();
    net.open_gate();
    let job = wait_job(&ctx.http, &d.base, &id, JOB_LIMIT).await?;
    let wall = t0.elapsed().as_secs_f64();
    let hwm = d.api.hwm_kb();
    let mut outs = Vec::new();
    for s in subs {
        outs.push(s.await?);
    }
    let got = categories(ctx, &d, &id).await?;
    println!(
        "    {n} hosts: job {} in {wall:.1}s after the gate opened ({} completed, {} failed); peak RSS {:.0} MB",
        job["status"].as_str().unwrap_or("?"),
        job["completed"],
        job["failed"],
        mb(hwm)
    );

    // The truth against what the service said, per kind.
    let mut columns: Vec<String> = vec!["success".into()];
    let mut by_kind: Vec<(Kind, usize, std::collections::BTreeMap<String, usize>)> = Kind::ALL
        .iter()
        .map(|&k| (k, 0, Default::default()))
        .collect();
    let (mut as_expected, mut with_icon, mut found, mut wrong_icon) = (0, 0, 0, 0);
    let (mut shared, mut shared_found) = (0, 0);
    for (name, h) in names.iter().zip(&web.hosts) {
        let (category, url) = got
            .get(name)
            .cloned()
            .unwrap_or_else(|| ("(missing)".into(), String::new()));
        if !columns.contains(&category) {
            columns.push(category.clone());
        }
        let row = by_kind.iter_mut().find(|r| r.0 == h.kind).unwrap();
        row.1 += 1;
        *row.2.entry(category.clone()).or_default() += 1;
        as_expected += usize::from(category == h.kind.truth());
        if let Some(path) = h.kind.icon_path() {
            with_icon += 1;
            let ok = category == "success";
            found += usize::from(ok);
            wrong_icon += usize::from(ok && !url.ends_with(path));
            if h.kind == Kind::Shared {
                shared += 1;
                shared_found += usize::from(ok);
            }
        }
    }
    let mut table = format!(
        "Slow web, {n} hosts: expected category (truth) against the service's, per kind of host \
         (seed {SEED}; latency log-normal, median {} ms, σ {LATENCY_SIGMA}, at most {} s):\n\n\
         | kind | hosts | truth | {} |\n| --- | ---: | --- |{}\n",
        MEDIAN_LATENCY.as_millis(),
        MAX_LATENCY.as_secs(),
        columns.join(" | "),
        " ---: |".repeat(columns.len())
    );
    for (k, hosts, counts) in by_kind.iter().filter(|r| r.1 > 0) {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match counts.get(c) {
                Some(v) if c == k.truth() => format!("**{v}**"),
                Some(v) => v.to_string(),
                None => String::new(),
            })
            .collect();
        let _ = writeln!(
            table,
            "| {} | {hosts} | {} | {} |",
            k.label(),
            k.truth(),
            cells.join(" | ")
        );
    }
    println!("{table}");

    let latencies: Vec<f64> = web
        .hosts
        .iter()
        .filter(|h| h.kind != Kind::Silent)
        .map(|h| h.latency.as_secs_f64() * 1000.0)
        .collect();
    let shared_sizes: Vec<String> = (0..SHARED.len())
        .map(|g| {
            let a = address(g);
            format!(
                "{} names on {a}",
                web.hosts.iter().filter(|h| h.addr == a).count()
            )
        })
        .collect();
    ctx.notes.push(format!(
        "{table}\nThe hosts' latencies as drawn: median {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, \
         max {:.0} ms; shared hosting: {}; {} addresses in all.",
        median(&latencies),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0),
        shared_sizes.join(", "),
        web.addresses.len()
    ));

    let rate = 100.0 * found as f64 / with_icon.max(1) as f64;
    ctx.row(
        &format!("slow web, {n} hosts: success rate of the hosts with an icon"),
        format!(
            "{rate:.1} % ({found} of {with_icon}; shared hosting {shared_found} of {shared}{}; job wall {wall:.1}s)",
            if wrong_icon > 0 {
                format!("; {wrong_icon} picked another icon than the host's")
            } else {
                String::new()
            }
        ),
        "≥ 99 %",
        Some(rate >= 99.0),
    );
    ctx.row(
        &format!("slow web, {n} hosts: categories against the truth"),
        format!("{as_expected} of {n} as expected (the table below)"),
        "all",
        Some(as_expected == n),
    );
    let closed: Vec<&String> = outs
        .iter()
        .filter_map(|o| o.error.as_ref())
        .filter(|e| e.starts_with("socket closed"))
        .collect();
    let other_errors: Vec<&String> = outs
        .iter()
        .filter_map(|o| o.error.as_ref())
        .filter(|e| !e.starts_with("socket closed"))
        .collect();
    ctx.row(
        &format!(
            "slow web: WebSocket closes before completion, {SUBSCRIBERS} jobProgress subscribers"
        ),
        format!(
            "{} of {SUBSCRIBERS}{}{}; {} completed",
            closed.len(),
            closed
                .first()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
            other_errors
                .first()
                .map(|e| format!("; other errors: {} (first: {e})", other_errors.len()))
                .unwrap_or_default(),
            outs.iter().filter(|o| o.completed).count()
        ),
        "0",
        Some(closed.is_empty() && other_errors.is_empty()),
    );
    let named: Vec<usize> = outs
        .iter()
        .map(|o| o.arrivals.iter().filter(|&&a| a > 0).count())
        .collect();
    ctx.row(
        "slow web: domains named in the subscribers' events",
        format!(
            "{} of {n}",
            named
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        "all",
        Some(named.iter().all(|&k| k == n)),
    );
    let (most, at, names_at) = web.busiest();
    ctx.row(
        "slow web: most requests in flight at one address (counted by the fake servers)",
        format!(
            "{most} at {at} ({names_at} names on it); FETCH_PER_ADDRESS_CONCURRENCY {limit} (default)"
        ),
        &format!("≤ {limit}"),
        Some(most <= limit),
    );
    ctx.row(
        &format!("slow web, {n} hosts: peak service RSS (VmHWM)"),
        format!("{:.0} MB", mb(hwm)),
        "(reported)",
        None,
    );
    Ok(())
}
