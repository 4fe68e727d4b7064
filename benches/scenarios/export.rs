//! The `csv` figures (issue 29): the download of a big job's CSV against the database's own
//! CSV export of the same rows (`sqlite3 -csv`; PostgreSQL's `COPY … TO STDOUT (FORMAT csv)`
//! through `psql`), the physical limit, on both databases; with `--baseline-bin`, also against
//! that build serving the same database, whose download must be byte for byte the same.
//!
//! Each run downloads from this build, then has the database export, then (with a baseline)
//! downloads from the baseline: interleaved, so a neighbour's build slows all three alike.

use super::*;

/// The columns the download shows, as the database's own export writes them (the icon's
/// link made of the domain; the times and booleans in the database's own formats, so only
/// the time to produce about as many bytes compares).
const NATIVE_COLUMNS: &str = "domain, status, favicon_url, error, tries, error_code, final_url, \
     mime, width, height, fetched_at, cached, \
     CASE WHEN icon_sha256 IS NULL THEN NULL ELSE 'https://icons.example/icons/' || domain END";

/// The `PUBLIC_URL` of the downloading processes, so every stored icon's link is absolute.
const PUBLIC_URL: &str = "https://icons.example";

/// The CSV of the SQLite job `id` of `n` results that deployment `d` ran (`sc_big`).
pub(crate) async fn sc_csv_sqlite(ctx: &mut Ctx, d: &Deployment, id: &str, n: usize) -> Result<()> {
    measure(ctx, Db::Sqlite, d, id, n).await
}

/// A PostgreSQL fleet runs a job of `--big` sites on `net`, then its CSV is measured.
pub(crate) async fn sc_csv_postgres(ctx: &mut Ctx, net: &FakeInternet) -> Result<()> {
    let n = ctx.opts.big;
    let d = ctx.deploy(Some(net), fleet()).await?;
    let (out, id) = timed_job(ctx, net, &d, n, None).await?;
    println!("    PostgreSQL job of {n} for the CSV: {:.1}s", out.wall);
    measure(ctx, Db::Postgres, &d, &id, n).await
}

/// One download, timed, with the growth of the serving process's RSS while it streams.
struct Download {
    secs: f64,
    growth_mb: f64,
    body: Vec<u8>,
}

async fn download(ctx: &Ctx, d: &Deployment, id: &str) -> Result<Download> {
    let pid = d.api.pid();
    // Reset VmHWM to the current RSS, then also sample VmRSS while streaming.
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let rss0 = d.api.rss_kb();
    let peak = Arc::new(AtomicU64::new(rss0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(proc_status_kb(pid, "VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let t0 = Instant::now();
    let mut r = ctx
        .http
        .get(format!("{}/jobs/{id}/download", d.base))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("download: {}", r.status());
    }
    let mut body = Vec::with_capacity(32 << 20);
    while let Some(chunk) = r.chunk().await? {
        body.extend_from_slice(&chunk);
    }
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let growth = peak
        .load(Ordering::Relaxed)
        .max(d.api.hwm_kb())
        .saturating_sub(rss0);
    Ok(Download {
        secs,
        growth_mb: mb(growth),
        body,
    })
}

/// The database's own CSV of job `id`: seconds and bytes, the output read through a pipe as
/// the download's is read through a socket.
fn native(db: Db, database_url: &str, id: &str) -> Result<(f64, usize)> {
    let mut cmd = match db {
        Db::Sqlite => {
            let file = database_url
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap_or_default();
            let hex = id.replace('-', "");
            let mut cmd = Command::new("sqlite3");
            cmd.args(["-csv", file]).arg(format!(
                "SELECT {NATIVE_COLUMNS} FROM result WHERE job_id = X'{hex}' ORDER BY position"
            ));
            cmd
        }
        Db::Postgres => {
            let mut cmd = Command::new("psql");
            cmd.args([database_url, "-q", "-v", "ON_ERROR_STOP=1", "-c"])
                .arg(format!(
                    "COPY (SELECT {NATIVE_COLUMNS} FROM result WHERE job_id = '{id}' \
                     ORDER BY position) TO STDOUT (FORMAT csv)"
                ));
            cmd
        }
    };
    let t0 = Instant::now();
    let out = cmd.output().context("the database's own export")?;
    let secs = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("native export: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((secs, out.stdout.len()))
}

/// An API process of `bin` over deployment `d`'s database, with icon links under
/// [`PUBLIC_URL`] and no workers.
async fn reader(ctx: &Ctx, bin: &Path, db: Db, d: &Deployment) -> Result<Deployment> {
    ctx.deploy_bin(
        bin,
        None,
        DeployOpts {
            db,
            workers: 0,
            api_no_worker: true,
            env: vec![
                ("DATABASE_URL", d.database_url.clone()),
                ("PUBLIC_URL", PUBLIC_URL.into()),
            ],
            cache: false,
        },
    )
    .await
}

async fn measure(ctx: &mut Ctx, db: Db, d: &Deployment, id: &str, n: usize) -> Result<()> {
    let name = if db == Db::Sqlite {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    let ours_d = reader(ctx, &ctx.bin.clone(), db, d).await?;
    let base_d = match ctx.opts.baseline_bin.clone() {
        Some(bin) => Some(reader(ctx, &bin, db, d).await?),
        None => None,
    };
    // One unmeasured pass each, so every run finds the rows in the page cache.
    download(ctx, &ours_d, id).await?;
    native(db, &d.database_url, id)?;
    let (mut ours, mut growth, mut theirs, mut base) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ctx.opts.runs {
        let got = download(ctx, &ours_d, id).await?;
        let lines = got.body.iter().filter(|&&b| b == b'\n').count();
        let (t_native, native_bytes) = native(db, &d.database_url, id)?;
        print!(
            "    CSV {name}: {lines} lines, {:.1} MB in {:.3}s (RSS +{:.1} MB); the database's own: {:.1} MB in {t_native:.3}s",
            got.body.len() as f64 / 1e6,
            got.secs,
            got.growth_mb,
            native_bytes as f64 / 1e6,
        );
        if lines != n + 1 {
            print!(" WARNING: expected {} lines", n + 1);
        }
        if let Some(base_d) = &base_d {
            let old = download(ctx, base_d, id).await?;
            print!("; baseline {:.3}s", old.secs);
            if old.body != got.body {
                println!();
                bail!(
                    "the CSV differs from the baseline's ({} vs {} bytes)",
                    got.body.len(),
                    old.body.len()
                );
            }
            print!(" (same bytes)");
            base.push(old.secs);
        }
        println!();
        ours.push(got.secs);
        growth.push(got.growth_mb);
        theirs.push(t_native);
    }
    let (t, g, tn) = (median(&ours), median(&growth), median(&theirs));
    let ratio = t / tn;
    let baseline = if base.is_empty() {
        String::new()
    } else {
        format!(
            "; baseline build {:.3}s, byte for byte the same",
            median(&base)
        )
    };
    ctx.row(
        &format!("CSV download of {n} results, {name}, vs the database's own CSV export"),
        format!(
            "{t:.3}s vs {tn:.3}s = {ratio:.2}×, RSS growth {g:.1} MB while streaming{baseline}"
        ),
        "≤ 0.5 s, ≤ 2× the database, ≤ 20 MB",
        Some(t <= 0.5 && ratio <= 2.0 && g <= 20.0),
    );
    Ok(())
}
