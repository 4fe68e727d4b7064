//! The benchmark harness: a fake internet on loopback, the service as a real process, jobs
//! through the REST API, figures printed and appended to `BENCHMARKS.md`.
//!
//! ```sh
//! export CARGO_TARGET_DIR=/work/target-bench   # optional; respected
//! cargo bench --bench harness -- --scenario all
//! cargo bench --bench harness -- --scenario throughput,cache --domains 500 --runs 1
//! ```
//!
//! Scenarios and options: see [`USAGE`] (`-- --help`).
//!
//! Nothing here sends traffic anywhere but loopback: the service reaches the fake internet
//! through `FETCH_RESOLVE=*=127.0.0.1:PORT` (the slow web: one entry per name, on addresses of
//! 127.77.0.0/16), the peer through a patched `getaddrinfo`.

// Test code: a failed unwrap is the test failing, with the value in the message
// (the unwrap_used lint in Cargo.toml is for the service).
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

// The service's allocator here too: the `subscribers` scenario's 1,000 clients share the
// machine with the service, and with glibc's malloc a third of their CPU was the allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The test CA, shared with the tests' fake internet.
#[path = "../tests/common/tls.rs"]
mod tls;
use tls::TestCa;

/// The `concurrency` scenario: domains in flight against throughput, CPU and RSS (issue 29).
#[path = "scenarios/concurrency.rs"]
mod concurrency;
#[path = "harness/dns.rs"]
mod dns;
/// The `features` scenario (issue 29): each feature of the last round alone.
#[path = "scenarios/features.rs"]
mod features;
/// The `purge` scenario (a file of its own; this one is long enough).
#[path = "scenarios/purge.rs"]
mod purge;
/// The `slow-web` scenario and its web (issue 25).
#[path = "scenarios/slow_web.rs"]
mod slow_web;
/// The `stages` scenario (issue 29): CPU per domain and where it goes.
#[path = "scenarios/stages.rs"]
mod stages;
/// The `subscribers` scenario.
#[path = "scenarios/subscribers.rs"]
mod subscribers;
/// The `tracing` scenario: bulk throughput with traces off, 1 % and 100 % sampled.
#[path = "scenarios/traces.rs"]
mod traces;
/// The `two-clients` scenario (issue 28).
#[path = "scenarios/two_clients.rs"]
mod two_clients;
/// The `watches` scenario (issue 31): re-checks spread over an hour beside a job.
#[path = "scenarios/watches.rs"]
mod watches;

#[path = "../tests/browser/cdp.rs"]
#[allow(
    dead_code,
    reason = "the scenario uses part of the browser tests' client"
)]
mod cdp;
/// The `dashboard` scenario, driving Chromium with the browser tests' CDP client.
#[path = "scenarios/dashboard.rs"]
mod dashboard;

#[path = "harness/net.rs"]
mod net;
pub(crate) use net::{FakeInternet, HOME, NetOpts, Snapshot, png32};
#[path = "harness/service.rs"]
mod service;
pub(crate) use service::{Ctx, Db, DeployOpts, Deployment};
#[path = "harness/jobs.rs"]
mod jobs;
pub(crate) use jobs::{
    RunOut, all_results, bulk_net, embedded, fleet, fresh_runs, job_limit, plain_net, post_job,
    post_job_as, summarize, timed_job, wait_job,
};
#[path = "harness/report.rs"]
mod report;
use report::append_report;
#[path = "scenarios/basic.rs"]
mod basic;
/// The `csv` figures against the databases' own exports (issue 29).
#[path = "scenarios/export.rs"]
mod export;
use basic::{
    sc_big, sc_cache, sc_create, sc_latency, sc_limit, sc_peer, sc_postgres, sc_throughput,
};
#[path = "scenarios/icons.rs"]
mod icons;
use icons::sc_icons;
#[path = "scenarios/profile.rs"]
mod profile;
use profile::sc_profile;

const ALL: [&str; 23] = [
    "throughput",
    "postgres",
    "latency",
    "limit",
    "peer",
    "rss",
    "create",
    "csv",
    "page",
    "growth",
    "cache",
    "subscribers",
    "profile",
    "icons",
    "purge",
    "dashboard",
    "slow-web",
    "two-clients",
    "stages",
    "features",
    "concurrency",
    "watches",
    "tracing",
];

/// What `--help` prints.
const USAGE: &str = "\
cargo bench --bench harness -- [--scenario LIST] [OPTIONS]

Scenarios (comma-separated, or all; default throughput):
  throughput postgres latency limit peer rss create csv page growth cache
  subscribers profile icons purge dashboard slow-web two-clients stages
  features concurrency watches tracing
  (concurrency sweeps WORKER_CONCURRENCY at 64,256,1000,2000,4000 and the default;
  CONCURRENCY_LEVELS=a,b,... in the environment for others)

Options:
  --domains N        sites of the throughput-style jobs (10000)
  --runs N           runs per figure (3)
  --big N            the large job of rss/create/csv/page/growth/purge/dashboard, and
                     alpha's job of two-clients (100000)
  --subscribers N    jobProgress subscribers of `subscribers` (1000)
  --peer-domains N   the first N domains for the peer (all)
  --web-hosts N      hosts of the slow web (2000)
  --pg URL           postgres://postgres@127.0.0.1:5432
  --redis URL        redis://127.0.0.1:6379
  --no-build         use $CARGO_TARGET_DIR/release/favicon-finder as it is
  --baseline-bin P   an earlier build of the service: two-clients times its bulk
                     throughput, stages its CPU per domain and where it goes,
                     features each feature's cost, csv its download of the same
                     database (byte for byte the same), create its createJob,
                     against this one's, in the same run
  --no-append        print the figures without appending them to BENCHMARKS.md
";

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Opts {
    scenarios: Vec<String>,
    domains: usize,
    runs: usize,
    big: usize,
    subscribers: usize,
    peer_domains: Option<usize>,
    /// Hosts of the slow web (`slow-web`).
    web_hosts: usize,
    /// An earlier service binary to compare throughput against (`two-clients`).
    baseline_bin: Option<PathBuf>,
    build: bool,
    append: bool,
    pg: String,
    redis: String,
    args: Vec<String>,
}

impl Opts {
    fn parse() -> Result<Self> {
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        let mut o = Opts {
            scenarios: vec![],
            domains: 10_000,
            runs: 3,
            big: 100_000,
            subscribers: 1000,
            peer_domains: None,
            web_hosts: 2000,
            baseline_bin: None,
            build: true,
            append: true,
            pg: "postgres://postgres@127.0.0.1:5432".into(),
            redis: "redis://127.0.0.1:6379".into(),
            args: args.clone(),
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().ok_or_else(|| anyhow!("{a} needs a value"));
            match a.as_str() {
                "--scenario" | "--scenarios" => {
                    for s in val()?.split(',') {
                        if s == "all" {
                            o.scenarios.extend(ALL.iter().map(|s| s.to_string()));
                        } else if ALL.contains(&s) {
                            o.scenarios.push(s.to_owned());
                        } else {
                            bail!("unknown scenario {s}; one of {ALL:?} or all");
                        }
                    }
                }
                "--domains" => o.domains = val()?.parse()?,
                "--runs" => o.runs = val()?.parse::<usize>()?.max(1),
                "--big" => o.big = val()?.parse()?,
                "--subscribers" => o.subscribers = val()?.parse()?,
                "--peer-domains" => o.peer_domains = Some(val()?.parse()?),
                "--web-hosts" => o.web_hosts = val()?.parse::<usize>()?.max(1),
                "--help" | "-h" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                "--pg" => o.pg = val()?,
                "--redis" => o.redis = val()?,
                "--no-build" => o.build = false,
                "--baseline-bin" => {
                    let p = PathBuf::from(val()?);
                    if !p.is_file() {
                        bail!("--baseline-bin {}: no such file", p.display());
                    }
                    o.baseline_bin = Some(p);
                }
                "--no-append" => o.append = false,
                other => bail!("unknown argument {other} (see --help)"),
            }
        }
        if o.scenarios.is_empty() {
            o.scenarios.push("throughput".into());
        }
        o.scenarios.dedup();
        Ok(o)
    }

    fn wants(&self, s: &str) -> bool {
        self.scenarios.iter().any(|x| x == s)
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn median(v: &[f64]) -> f64 {
    percentile(v, 50.0)
}

fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[rank.min(s.len() - 1)]
}

fn domains(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("site{i}.bench")).collect()
}

fn site_index(host: &str) -> Option<usize> {
    host.strip_prefix("site")?.split('.').next()?.parse().ok()
}

/// A field of `/proc/PID/status` in kB.
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of a process, in seconds (USER_HZ = 100).
fn cpu_secs(pid: &str) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

fn build_binary(o: &Opts) -> Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("target"));
    let target = if target.is_relative() {
        manifest.join(target)
    } else {
        target
    };
    if o.build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // Cargo sets CARGO_* (and OUT_DIR, LD_LIBRARY_PATH) for the bench process; a nested build
        // that saw them would fingerprint build scripts differently and rebuild everything.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            let keep = matches!(k.as_str(), "CARGO_HOME" | "CARGO_TARGET_DIR");
            if (k.starts_with("CARGO_") && !keep) || k == "OUT_DIR" || k == "LD_LIBRARY_PATH" {
                cmd.env_remove(&k);
            }
        }
        let st = cmd
            .args(["build", "--release", "--bin", "favicon-finder"])
            .current_dir(manifest)
            .status()?;
        if !st.success() {
            bail!("cargo build --release failed");
        }
    }
    let bin = target.join("release/favicon-finder");
    if !bin.exists() {
        bail!("{} missing (run cargo build --release)", bin.display());
    }
    Ok(bin)
}

fn main() -> Result<()> {
    let opts = Opts::parse()?;
    let bin = build_binary(&opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let started = chrono::Local::now()
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string();
        let load0 = loadavg();
        let t0 = Instant::now();
        let mut ctx = Ctx {
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(4)
                .build()?,
            tmp: tempfile::Builder::new().prefix("ffbench-").tempdir()?,
            bin,
            opts: opts.clone(),
            rows: vec![],
            notes: vec![],
            plain_runs: vec![],
        };
        println!(
            "favicon-finder bench: {:?}, {} domains, {} runs, big job {}, load {load0}",
            opts.scenarios, opts.domains, opts.runs, opts.big
        );
        let mut big_done = false;
        for s in &opts.scenarios {
            println!("== {s}");
            let r = match s.as_str() {
                "throughput" => sc_throughput(&mut ctx).await,
                "postgres" => sc_postgres(&mut ctx).await,
                "latency" => sc_latency(&mut ctx).await,
                "limit" => sc_limit(&mut ctx).await,
                "peer" => sc_peer(&mut ctx).await,
                "rss" | "csv" | "page" | "growth" if !big_done => {
                    big_done = true;
                    sc_big(&mut ctx).await
                }
                "rss" | "csv" | "page" | "growth" => Ok(()),
                "create" => sc_create(&mut ctx).await,
                "cache" => sc_cache(&mut ctx).await,
                "subscribers" => subscribers::sc_subscribers(&mut ctx).await,
                "profile" => sc_profile(&mut ctx).await,
                "icons" => sc_icons(&mut ctx).await,
                "purge" => purge::sc_purge(&mut ctx).await,
                "dashboard" => dashboard::sc_dashboard(&mut ctx).await,
                "slow-web" => slow_web::sc_slow_web(&mut ctx).await,
                "two-clients" => two_clients::sc_two_clients(&mut ctx).await,
                "stages" => stages::sc_stages(&mut ctx).await,
                "features" => features::sc_features(&mut ctx).await,
                "concurrency" => concurrency::sc_concurrency(&mut ctx).await,
                "watches" => watches::sc_watches(&mut ctx).await,
                "tracing" => traces::sc_tracing(&mut ctx).await,
                _ => unreachable!(),
            };
            if let Err(e) = r {
                let msg = format!("{e:#}");
                eprintln!("  scenario {s} failed: {msg}");
                ctx.row(
                    &format!("scenario {s}"),
                    format!("error: {}", msg.lines().next().unwrap_or("")),
                    "runs",
                    Some(false),
                );
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        if ctx.opts.append {
            append_report(&ctx, &started, &load0, secs)?;
        }
        Ok::<_, anyhow::Error>(())
    })
}

/// Sends SIGINT to a child (perf writes its profile on it); through rustix, as the tests do,
/// since a slim image has no `kill` executable.
pub(crate) fn interrupt(child: &std::process::Child) {
    if let Some(pid) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
    }
}
