//! The `stages` scenario (issue 29): where the service's CPU per domain goes, stage by stage,
//! for this build and `--baseline-bin`, over plain HTTP and HTTPS, in one invocation.
//!
//! Both builds get the same slots ([`same_slots`]). CPU per domain is the service's own CPU (`/proc/PID/stat`) over a bulk job, the median of
//! `--runs` interleaved runs per build. Its split into stages comes from one more run per
//! build under `perf record --call-graph dwarf`: each sample goes to the first stage, in
//! [`STAGES`] order, that any frame of its stack names. The order puts the specific before
//! the general: a sample in SQLite's engine under a claim is the claim's, a TLS write under
//! hyper is TLS, a TCP connect under the TLS connector is the connect. Samples in no stage (the runtime's scheduler, the kernel's task switches,
//! the allocator outside any of them) are `runtime and kernel`.

use super::*;

/// A stage and the substrings of a symbol that put a sample in it.
struct Stage {
    name: &'static str,
    patterns: &'static [&'static str],
}

/// The stages, most specific first (see the module doc).
const STAGES: &[Stage] = &[
    // Before TLS: reqwest's TLS connector wraps the TCP connect of every request, plain or not.
    Stage {
        name: "connect (TCP: socket, connect, on loopback the peer's side of the handshake too)",
        patterns: &[
            "ConnectingTcp",
            "HttpConnector",
            "TcpStream::connect",
            "tcp_v4_connect",
            "__sys_connect",
            "inet_stream_connect",
            "__sys_socket",
            "inet_hash_connect",
        ],
    },
    Stage {
        name: "TLS (handshake, encryption, certificate checks; over plain HTTP the https attempt)",
        patterns: &[
            "rustls",
            "aws_lc",
            "webpki",
            "ecp_nistz",
            "curve25519",
            "sha512_block",
        ],
    },
    Stage {
        name: "DNS (the guarded resolver)",
        patterns: &["hickory", "finder::resolve"],
    },
    Stage {
        name: "parse (HTML, links, ranking)",
        patterns: &[
            "lol_html",
            "finder::html",
            "finder::links",
            "finder::rank",
            "finder::page::declared",
        ],
    },
    Stage {
        name: "verify (image headers)",
        patterns: &["finder::image", "imagesize", "png::", "image::"],
    },
    Stage {
        name: "hash (SHA-256 of icons)",
        patterns: &["sha2::", "Sha256", "sha256"],
    },
    Stage {
        name: "politeness slots",
        patterns: &["finder::fetch::Slots", "favicon_finder::politeness"],
    },
    Stage {
        name: "publish (progress events)",
        patterns: &["favicon_finder::events", "favicon_finder::jobs::feed"],
    },
    // The harness asks for the job every 10 ms; the service answers it on the same cores.
    Stage {
        name: "API (the harness's polling of the job)",
        patterns: &["favicon_finder::api", "axum::", "async_graphql"],
    },
    Stage {
        name: "claim",
        patterns: &["queue::claim", "worker::fair", "model::fair"],
    },
    Stage {
        name: "record",
        patterns: &["worker::recorder", "favicon_finder::store"],
    },
    Stage {
        name: "database engine (SQLite's thread)",
        patterns: &["sqlite3", "sqlx_sqlite", "sqlx_core", "sea_orm"],
    },
    Stage {
        name: "request and response (HTTP/1, sockets)",
        patterns: &[
            "hyper",
            "reqwest",
            "finder::fetch",
            "tcp_sendmsg",
            "tcp_recvmsg",
            "sock_",
            "__sys_shutdown",
            "tcp_close",
        ],
    },
    Stage {
        name: "the finder's other work",
        patterns: &["favicon_finder::finder"],
    },
    Stage {
        name: "the worker's loop",
        patterns: &["favicon_finder::worker"],
    },
];

/// The slots every build gets here: the baseline's default (80, of which a lone job holds
/// 64). On this fast web the service is CPU-bound, and the default changed with issue 29
/// (512): with 409 domains in flight against 64 a build spends more CPU per domain on the
/// same work (more connections open at once, more contention with the fake internet), which
/// would hide what the cuts did.
pub(crate) fn same_slots() -> DeployOpts<'static> {
    DeployOpts {
        env: vec![("WORKER_CONCURRENCY", "80".into())],
        ..embedded()
    }
}

/// Where a sample in no stage goes.
const REST: &str = "runtime and kernel (scheduling, wake-ups, the rest)";

/// CPU seconds per stage, from one run's samples, with the run's CPU per domain.
struct Split {
    per_domain_us: f64,
    samples: usize,
    shares: Vec<(String, f64)>,
}

pub(crate) async fn sc_stages(ctx: &mut Ctx) -> Result<()> {
    if Command::new("perf").arg("--version").output().is_err() {
        ctx.note("stages: perf is not available; no split by stage".into());
    }
    for tls in [false, true] {
        stages_one(ctx, tls).await?;
    }
    Ok(())
}

async fn stages_one(ctx: &mut Ctx, tls: bool) -> Result<()> {
    let n = ctx.opts.domains;
    let mode = if tls { "HTTPS" } else { "plain HTTP" };
    let net = bulk_net(ctx, n, tls, false).await?;
    let mut builds = vec![("this build", ctx.bin.clone())];
    if let Some(b) = ctx.opts.baseline_bin.clone() {
        builds.push(("baseline", b));
    }
    // CPU per domain: interleaved, so the machine's load falls on every build alike.
    let mut cpu: Vec<Vec<f64>> = vec![vec![]; builds.len()];
    let mut rates: Vec<Vec<f64>> = vec![vec![]; builds.len()];
    for _ in 0..ctx.opts.runs {
        for (i, (_, bin)) in builds.iter().enumerate() {
            let d = ctx.deploy_bin(bin, Some(&net), same_slots()).await?;
            let (out, _) = timed_job(ctx, &net, &d, n, None).await?;
            cpu[i].push(out.svc_cpu / n as f64 * 1e6);
            rates[i].push(out.rate());
        }
    }
    let mut splits = vec![];
    for (i, (_, bin)) in builds.iter().enumerate() {
        let per_domain_us = median(&cpu[i]);
        let split = profile_split(ctx, &net, bin, n, tls).await?;
        splits.push(split.map(|(samples, shares)| Split {
            per_domain_us,
            samples,
            shares,
        }));
    }
    let ours = median(&cpu[0]);
    match builds.get(1) {
        Some(_) => {
            let base = median(&cpu[1]);
            ctx.row(
                &format!("service CPU per domain, bulk {mode}, {n} domains, this build / baseline"),
                format!(
                    "{:.2}× ({ours:.0} µs against {base:.0} µs per domain; {:.0}/s against {:.0}/s; run by run {})",
                    ours / base,
                    median(&rates[0]),
                    median(&rates[1]),
                    cpu[0]
                        .iter()
                        .zip(&cpu[1])
                        .map(|(a, b)| format!("{:.2}", a / b))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                if tls { "≤ 0.5×" } else { "(reported)" },
                tls.then_some(ours / base <= 0.5),
            );
        }
        None => ctx.row(
            &format!("service CPU per domain, bulk {mode}, {n} domains"),
            format!("{ours:.0} µs ({:.0}/s)", median(&rates[0])),
            "(reported)",
            None,
        ),
    }
    let table = split_table(mode, n, &builds, &splits);
    println!("{table}");
    ctx.notes.push(table);
    Ok(())
}

/// One run of `bin` under `perf record`, its samples split by stage; `None` without perf.
async fn profile_split(
    ctx: &Ctx,
    net: &FakeInternet,
    bin: &Path,
    n: usize,
    tls: bool,
) -> Result<Option<(usize, Vec<(String, f64)>)>> {
    let name = format!(
        "stages-{}-{}",
        if tls { "https" } else { "plain" },
        if bin == ctx.bin { "this" } else { "baseline" }
    );
    let Some(text) = perf_run(ctx, net, bin, n, same_slots(), &name).await? else {
        return Ok(None);
    };
    let (samples, counts) = classify(&text);
    if samples == 0 {
        return Ok(None);
    }
    let shares = counts
        .into_iter()
        .map(|(name, c)| (name, c as f64 / samples as f64))
        .collect();
    Ok(Some((samples, shares)))
}

/// One job of `n` domains run by `bin` deployed with `opts`, under `perf record` (CPU clock,
/// 499 Hz, DWARF call graphs); the samples' stacks as `perf script` prints them (blank-line
/// separated, one frame a line), or `None` without perf. The data is kept as
/// `bench-{name}.data` in the target directory for a closer look (`perf report -i … -G`).
pub(crate) async fn perf_run(
    ctx: &Ctx,
    net: &FakeInternet,
    bin: &Path,
    n: usize,
    opts: DeployOpts<'_>,
    name: &str,
) -> Result<Option<String>> {
    let d = ctx.deploy_bin(bin, Some(net), opts).await?;
    let data = ctx.tmp.path().join(format!("{name}.data"));
    let perf = Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "499",
            "--call-graph",
            "dwarf,32768",
            "-o",
        ])
        .arg(&data)
        .args(["-p", &d.api.pid().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut perf) = perf else {
        return Ok(None);
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    timed_job(ctx, net, &d, n, None).await?;
    interrupt(&perf);
    let _ = perf.wait();
    drop(d);
    let kept = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join(format!("bench-{name}.data"));
    if std::fs::copy(&data, &kept).is_ok() {
        println!("    perf data kept at {}", kept.display());
    }
    let script = tokio::task::spawn_blocking(move || {
        Command::new("perf")
            .args(["script", "--no-inline", "-F", "ip,sym", "-i"])
            .arg(&data)
            .stderr(Stdio::null())
            .output()
    })
    .await??;
    Ok(Some(String::from_utf8_lossy(&script.stdout).into_owned()))
}

/// Counts `perf script` samples (blank-line separated stacks, one frame a line) by stage.
fn classify(script: &str) -> (usize, Vec<(String, usize)>) {
    let mut counts = vec![0usize; STAGES.len() + 1];
    let mut samples = 0;
    for block in script.split("\n\n") {
        let frames: Vec<&str> = block
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if frames.is_empty() {
            continue;
        }
        samples += 1;
        let stage = STAGES
            .iter()
            .position(|s| {
                frames
                    .iter()
                    .any(|f| s.patterns.iter().any(|p| f.contains(p)))
            })
            .unwrap_or(STAGES.len());
        counts[stage] += 1;
    }
    let names = STAGES.iter().map(|s| s.name).chain([REST]);
    (samples, names.map(String::from).zip(counts).collect())
}

/// The table of µs per domain by stage, one column per build.
fn split_table(
    mode: &str,
    n: usize,
    builds: &[(&str, PathBuf)],
    splits: &[Option<Split>],
) -> String {
    let mut s = format!(
        "Service CPU per domain by stage, bulk {mode}, {n} domains, embedded SQLite (µs per domain; the total is the median of the timed runs, its split one more run under `perf record --call-graph dwarf`, samples in brackets):\n\n| stage |"
    );
    for ((name, _), split) in builds.iter().zip(splits) {
        let samples = split.as_ref().map_or(0, |x| x.samples);
        let _ = write!(s, " {name} ({samples} samples) |");
    }
    s.push_str("\n| --- |");
    for _ in builds {
        s.push_str(" ---: |");
    }
    let names: Vec<&str> = STAGES.iter().map(|x| x.name).chain([REST]).collect();
    for (k, name) in names.iter().enumerate() {
        let _ = write!(s, "\n| {name} |");
        for split in splits {
            match split {
                Some(x) => {
                    let share = x.shares[k].1;
                    let _ = write!(
                        s,
                        " {:.0} ({:.1} %) |",
                        share * x.per_domain_us,
                        share * 100.0
                    );
                }
                None => s.push_str(" - |"),
            }
        }
    }
    s.push_str("\n| **all** |");
    for split in splits {
        match split {
            Some(x) => {
                let _ = write!(s, " **{:.0}** |", x.per_domain_us);
            }
            None => s.push_str(" - |"),
        }
    }
    s
}
