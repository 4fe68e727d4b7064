//! The `profile` scenario: a `perf record` of the service during a job.

use super::*;

pub(crate) async fn sc_profile(ctx: &mut Ctx) -> Result<()> {
    for tls in [false, true] {
        profile_one(ctx, tls).await?;
    }
    Ok(())
}

/// A `perf record` of the service during one `--domains` job, over plain HTTP or HTTPS.
async fn profile_one(ctx: &mut Ctx, tls: bool) -> Result<()> {
    let n = ctx.opts.domains;
    let mode = if tls { "HTTPS" } else { "plain HTTP" };
    let net = bulk_net(ctx, n, tls, false).await?;
    let d = ctx.deploy(Some(&net), embedded()).await?;
    let data = ctx.tmp.path().join("perf.data");
    let perf = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-o"])
        .arg(&data)
        .args(["-p", &d.api.pid().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut perf) = perf else {
        ctx.note("perf is not available; no profile".into());
        return Ok(());
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (out, _) = timed_job(ctx, &net, &d, n, None).await?;
    interrupt(&perf);
    let _ = perf.wait();
    let report = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "dso,symbol",
            "-g",
            "none",
            "--percent-limit",
            "1",
            "-i",
        ])
        .arg(&data)
        .output()?;
    // Kept outside the repository for a closer look (`perf report -i … -G`).
    let kept = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join(if tls {
            "bench-perf-https.data"
        } else {
            "bench-perf.data"
        });
    if std::fs::copy(&data, &kept).is_ok() {
        println!("    perf data kept at {}", kept.display());
    }
    let text = String::from_utf8_lossy(&report.stdout);
    let top: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.trim_end().trim_end_matches(['-', ' ']))
        .take(30)
        .collect();
    let top = top.join("\n");
    println!("{top}");
    ctx.notes.push(format!(
        "perf profile of the service (cpu-clock, {n} domains over {mode}, {:.2}s, service CPU {:.1}s, fake internet+harness CPU {:.1}s), self time by symbol, ≥ 1%:\n\n```\n{top}\n```",
        out.wall, out.svc_cpu, out.harness_cpu
    ));
    Ok(())
}
