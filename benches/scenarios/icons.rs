//! The `icons` scenario: stored icon bytes and `GET /icons/{domain}` latency.

use super::*;

/// `icon_blob` rows and their bytes in a deployment's SQLite file.
async fn icon_storage(d: &Deployment) -> Result<(i64, i64)> {
    use sea_orm::{ConnectionTrait, Statement};
    let url = format!(
        "sqlite://{}?mode=rw",
        d._dir.path().join("bench.db").display()
    );
    let store = favicon_finder::store::Store::connect(&url, 1).await?;
    let db = store.connection();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM icon_blob",
        ))
        .await?
        .ok_or_else(|| anyhow!("no row"))?;
    let out = (
        row.try_get::<i64>("", "n")?,
        row.try_get::<i64>("", "bytes")?,
    );
    db.clone().close().await?;
    Ok(out)
}

/// Latencies in ms of `GET` on each path, one after another on a kept-alive connection;
/// every answer must have `status`.
async fn icon_latencies(
    ctx: &Ctx,
    d: &Deployment,
    paths: &[String],
    status: u16,
) -> Result<Vec<f64>> {
    let mut ms = Vec::with_capacity(paths.len());
    for p in paths {
        let t0 = Instant::now();
        let r = ctx.http.get(format!("{}{p}", d.base)).send().await?;
        let st = r.status().as_u16();
        let _ = r.bytes().await?;
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        if st != status {
            bail!("GET {p} answered {st}, expected {status}");
        }
    }
    Ok(ms)
}

/// Icons: bytes stored for a bulk job (every site with the same icon, then every site with its
/// own), and the latency of `GET /icons/{domain}`: stored, resized cold and warm, fallback.
pub(crate) async fn sc_icons(ctx: &mut Ctx) -> Result<()> {
    let n = ctx.opts.domains;
    let net = plain_net(ctx, n, Duration::ZERO).await?;
    let d = ctx.deploy(Some(&net), embedded()).await?;
    let (shared_run, _) = timed_job(ctx, &net, &d, n, None).await?;
    let (shared_rows, shared_bytes) = icon_storage(&d).await?;
    drop(d);
    net.net.distinct_icons.store(true, Ordering::Relaxed);
    let d = ctx.deploy(Some(&net), embedded()).await?;
    let (distinct_run, _) = timed_job(ctx, &net, &d, n, None).await?;
    let (rows, bytes) = icon_storage(&d).await?;
    ctx.row(
        &format!("icons stored for {n} bulk domains (ICON_STORE=chosen)"),
        format!(
            "one icon shared by all: {shared_rows} row, {shared_bytes} bytes ({:.0} domains/s); \
             a distinct icon each: {rows} rows, {bytes} bytes = {:.0} bytes/domain ({:.0} domains/s); \
             ICON_MAX_BYTES 262144 bounds one icon",
            shared_run.rate(),
            bytes as f64 / n as f64,
            distinct_run.rate()
        ),
        "grows with distinct icons",
        Some(shared_rows == 1 && rows == n as i64),
    );
    let k = n.min(1000);
    let stored: Vec<String> = (0..k).map(|i| format!("/icons/site{i}.bench")).collect();
    let resized: Vec<String> = stored
        .iter()
        .map(|p| format!("{p}?size=64&format=png"))
        .collect();
    let fallback: Vec<String> = (0..k).map(|i| format!("/icons/never{i}.bench")).collect();
    for (figure, paths, status) in [
        ("stored icon", &stored, 200),
        ("resized to 64 px, cold", &resized, 200),
        ("resized to 64 px, warm", &resized, 200),
        ("letter fallback", &fallback, 200),
    ] {
        let ms = icon_latencies(ctx, &d, paths, status).await?;
        let (p50, p99) = (median(&ms), percentile(&ms, 99.0));
        ctx.row(
            &format!("GET /icons/{{domain}}: {figure}, {k} sequential requests, SQLite"),
            format!("median {p50:.2} ms, p99 {p99:.2} ms"),
            "-",
            None,
        );
    }
    Ok(())
}
