//! The `watches` scenario: 100,000 watched domains due over an hour. What claim rate the
//! re-checks run at, whether a client's job still gets its share while they run, and how
//! much the database grows per day of checks and of changes.
//!
//! The web is `two-clients`' (alpha's slow sites: the slow web's heavy-tailed latency, every
//! name on one address told apart by `Host`). One watch of [`WATCHED`] sites re-checks each
//! hourly, spread over the hour; its home pages are counted as they arrive, so the claim rate
//! is read off the web, not off the service. A job of [`JOB`] other sites is timed alone
//! first, then again while the watch runs. Then a second watch of [`FLIPS`] sites every
//! [`FLIP_EVERY`] sees their icons change once, and the change rows' size is read from
//! PostgreSQL's own accounting.

use super::*;
use two_clients::{Web, clients_net};

/// The watched sites.
const WATCHED: usize = 100_000;
/// How often each is re-checked.
const EVERY: Duration = Duration::from_secs(3600);
/// How long the claim rate is counted.
const WINDOW: Duration = Duration::from_secs(60);
/// The sites of the job timed alone and beside the watch (two sets, so the second is not
/// answered from the cache).
const JOB: usize = 2000;
/// Sites whose icon changes under the second watch.
const FLIPS: usize = 1000;
/// The second watch's period.
const FLIP_EVERY: Duration = Duration::from_secs(10);

/// Embedded SQLite, then the fleet.
pub(crate) async fn sc_watches(ctx: &mut Ctx) -> Result<()> {
    one(ctx, "embedded SQLite", embedded()).await?;
    one(ctx, "fleet: PostgreSQL + Redis, 1 API + 2 workers", fleet()).await
}

/// `POST /watches` as `client`; the watch's id.
async fn post_watch(
    http: &reqwest::Client,
    base: &str,
    client: &str,
    domains: &[String],
    every: Duration,
) -> Result<String> {
    let body = json!({"client_id": client, "domains": domains, "every": every.as_secs()});
    let r = http
        .post(format!("{base}/watches"))
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if !status.is_success() {
        bail!("POST /watches answered {status}: {v}");
    }
    v["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no id in {v}"))
}

/// One job of `names` as client `beta`, timed to its end: domains per second.
async fn timed(ctx: &Ctx, base: &str, names: &[String]) -> Result<f64> {
    let t = Instant::now();
    let created = post_job_as(&ctx.http, base, "beta", names, None).await?;
    let id = created["job_id"].as_str().unwrap_or_default().to_owned();
    wait_job(&ctx.http, base, &id, Duration::from_secs(600)).await?;
    Ok(names.len() as f64 / t.elapsed().as_secs_f64())
}

/// One number a PostgreSQL query answers.
fn pg_number(url: &str, sql: &str) -> Result<f64> {
    let out = Command::new("psql")
        .args([url, "-Atc", sql])
        .output()
        .context("psql")?;
    if !out.status.success() {
        bail!("psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

async fn one(ctx: &mut Ctx, label: &str, mut o: DeployOpts<'static>) -> Result<()> {
    let flips = WATCHED + 2 * JOB..WATCHED + 2 * JOB + FLIPS;
    let web = Arc::new(Web::counting(flips.end, WATCHED, flips.clone()));
    let net = clients_net(ctx, &web).await?;
    o.env
        .push(("WATCH_MIN_EVERY_SECS", FLIP_EVERY.as_secs().to_string()));
    let d = ctx.deploy(Some(&net), o).await?;
    let base = d.base.clone();

    let alone = timed(ctx, &base, &web.alpha_range(WATCHED..WATCHED + JOB)).await?;

    let t = Instant::now();
    let watch = post_watch(
        &ctx.http,
        &base,
        "watcher",
        &web.alpha_range(0..WATCHED),
        EVERY,
    )
    .await?;
    let created_in = t.elapsed().as_secs_f64();
    let cpu0 = d.cpu();
    let homes0 = web.homes.load(Ordering::Relaxed);
    let started = Instant::now();
    // Halfway through the window the job runs again, beside the watch's re-checks.
    tokio::time::sleep(WINDOW / 3).await;
    let beside = timed(
        ctx,
        &base,
        &web.alpha_range(WATCHED + JOB..WATCHED + 2 * JOB),
    )
    .await?;
    if let Some(rest) = WINDOW.checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let window = started.elapsed().as_secs_f64();
    let checks = (web.homes.load(Ordering::Relaxed) - homes0) as f64;
    let rate = checks / window;
    let due = WATCHED as f64 / EVERY.as_secs_f64();
    let cpu = (d.cpu() - cpu0) / window;
    ctx.row(
        &format!(
            "watches, {label}: re-checks of {WATCHED} domains every {} s, counted at the web over {window:.0} s",
            EVERY.as_secs()
        ),
        format!(
            "{rate:.1}/s against {due:.1}/s due ({:.0} %); service {cpu:.2} cores meanwhile; watch created in {created_in:.2} s",
            rate / due * 100.0
        ),
        "≥ 90 % of the rate due",
        Some(rate >= 0.9 * due),
    );
    ctx.row(
        &format!("watches, {label}: a job of {JOB} slow sites beside the re-checks"),
        format!(
            "{beside:.0}/s against {alone:.0}/s alone ({:.2}×)",
            beside / alone
        ),
        "≥ 0.9× alone",
        Some(beside >= 0.9 * alone),
    );

    // Another client: `WATCH_MAX_DOMAINS` (100,000 by default) bounds each client's watches.
    let flip_watch = post_watch(
        &ctx.http,
        &base,
        "flipper",
        &web.alpha_range(flips.clone()),
        FLIP_EVERY,
    )
    .await?;
    // One pass to set each site's baseline, then the icons change; the next pass sees it.
    tokio::time::sleep(FLIP_EVERY + Duration::from_secs(5)).await;
    web.flipped.store(true, Ordering::Relaxed);
    let flipped = Instant::now();
    let mut changes;
    loop {
        let seen: Value = ctx
            .http
            .get(format!("{base}/watches/{flip_watch}"))
            .send()
            .await?
            .json()
            .await?;
        changes = seen["change_count"].as_i64().unwrap_or(-1);
        if changes >= FLIPS as i64 || flipped.elapsed() > 6 * FLIP_EVERY {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = flipped.elapsed().as_secs_f64();
    ctx.row(
        &format!(
            "watches, {label}: {FLIPS} icons changed under a watch every {} s",
            FLIP_EVERY.as_secs()
        ),
        format!("{changes} changes recorded {took:.1} s after the change"),
        &format!("= {FLIPS} within 2 periods"),
        Some(changes == FLIPS as i64 && took <= 2.0 * FLIP_EVERY.as_secs_f64()),
    );
    if d.database_url.starts_with("postgres") {
        growth(ctx, &d.database_url, label)?;
    }
    let _ = watch;
    Ok(())
}

/// The database's growth per day: check rows (kept for a day by default) and change rows,
/// from PostgreSQL's own size of each table with its indexes.
fn growth(ctx: &mut Ctx, url: &str, label: &str) -> Result<()> {
    let per_row = |table: &str| -> Result<f64> {
        let rows = pg_number(url, &format!("SELECT count(*) FROM {table}"))?;
        let bytes = pg_number(url, &format!("SELECT pg_total_relation_size('{table}')"))?;
        Ok(bytes / rows.max(1.0))
    };
    let (result, change) = (per_row("result")?, per_row("icon_change")?);
    let checks_per_day = WATCHED as f64 * 86_400.0 / EVERY.as_secs_f64();
    let mb = |b: f64| b / 1e6;
    ctx.row(
        &format!("watches, {label}: database growth per day of {WATCHED} domains checked hourly"),
        format!(
            "checks: {checks_per_day:.0} result rows of {result:.0} B (with indexes) = {:.0} MB a day, kept {} h by default; changes: {change:.0} B each (with indexes), so {:.2} MB a day if 1 % of the domains change daily, {:.1} MB if all do",
            mb(checks_per_day * result),
            24,
            mb(WATCHED as f64 * 0.01 * change),
            mb(WATCHED as f64 * change)
        ),
        "shown",
        None,
    );
    Ok(())
}
