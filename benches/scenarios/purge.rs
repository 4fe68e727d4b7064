//! The `purge` scenario: deleting a job of `--big` results on each database, the longest
//! single transaction of that purge, the throughput of a job running at the same time
//! compared with the same job alone on the same service, and the SQLite file before and after
//! purging half its jobs.

use super::*;

/// The bytes of a deployment's SQLite file and of its write-ahead log.
fn sqlite_bytes(d: &Deployment) -> (u64, u64) {
    let bytes = |f: &str| {
        std::fs::metadata(d._dir.path().join(f))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    (bytes("bench.db"), bytes("bench.db-wal"))
}

/// The longest transaction the API logged for its deletes (`"job deleted"`, `longest_ms`).
fn longest_logged_ms(d: &Deployment) -> Option<u64> {
    let log = std::fs::read_to_string(&d.api.log).ok()?;
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["message"] == "job deleted")
        .filter_map(|v| v["longest_ms"].as_u64())
        .max()
}

async fn delete_job(ctx: &Ctx, d: &Deployment, id: &str) -> Result<f64> {
    let t0 = Instant::now();
    let status = ctx
        .http
        .delete(format!("{}/jobs/{id}", d.base))
        .send()
        .await?
        .status();
    if status.as_u16() != 204 {
        bail!("DELETE /jobs/{id}: {status}");
    }
    Ok(t0.elapsed().as_secs_f64())
}

pub(super) async fn sc_purge(ctx: &mut Ctx) -> Result<()> {
    let big = ctx.opts.big;
    let n = ctx.opts.domains;
    let net = plain_net(ctx, big.max(n), Duration::ZERO).await?;
    for db in [Db::Sqlite, Db::Postgres] {
        let env = vec![
            ("RUST_LOG", "warn,favicon_finder::jobs=info".to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
        ];
        let opts = match db {
            Db::Sqlite => DeployOpts {
                cache: true,
                env,
                ..embedded()
            },
            Db::Postgres => DeployOpts {
                db: Db::Postgres,
                workers: 2,
                api_no_worker: true,
                env,
                cache: true,
            },
        };
        let name = if db == Db::Sqlite {
            "SQLite"
        } else {
            "PostgreSQL"
        };
        let d = ctx.deploy(Some(&net), opts).await?;
        // Every job fetches (max age 0), so the purge keeps the cache rows it would in
        // production while the job beside it does real work.
        let (_, purged) = timed_job(ctx, &net, &d, big, Some(0)).await?;
        let (_, _kept) = timed_job(ctx, &net, &d, big, Some(0)).await?;
        let (alone, alone_id) = timed_job(ctx, &net, &d, n, Some(0)).await?;
        let before = sqlite_bytes(&d);
        let purge = {
            let http = ctx.http.clone();
            let url = format!("{}/jobs/{purged}", d.base);
            tokio::spawn(async move {
                let t0 = Instant::now();
                let status = http.delete(url).send().await.map(|r| r.status().as_u16());
                (t0.elapsed().as_secs_f64(), status)
            })
        };
        let (beside, _) = timed_job(ctx, &net, &d, n, Some(0)).await?;
        let (purge_s, status) = purge.await?;
        if status? != 204 {
            bail!("DELETE of the big job did not answer 204");
        }
        let longest = longest_logged_ms(&d);
        ctx.row(
            &format!("purge (DELETE /jobs/{{id}}) of a {big}-result job, {name}"),
            format!(
                "{purge_s:.2}s; longest single transaction {}",
                longest.map_or("not logged".into(), |ms| format!("{ms} ms"))
            ),
            "(reported)",
            None,
        );
        ctx.row(
            &format!("a {n}-domain job during that purge vs alone, {name}"),
            format!(
                "{:.0}/s during, {:.0}/s alone ({:.0} %)",
                beside.rate(),
                alone.rate(),
                100.0 * beside.rate() / alone.rate()
            ),
            "(reported)",
            None,
        );
        if db == Db::Sqlite {
            // Two big jobs and two small ones; with the big one above, half are gone.
            delete_job(ctx, &d, &alone_id).await?;
            // One more small job, so the WAL is reset (and cut to its limit) by a write, as
            // it would be in a service that keeps working.
            timed_job(ctx, &net, &d, 10, Some(0)).await?;
            let after = sqlite_bytes(&d);
            let mb = |b: u64| b as f64 / 1e6;
            ctx.row(
                "SQLite file + WAL before and after purging half its jobs",
                format!(
                    "{:.1} + {:.1} MB → {:.1} + {:.1} MB",
                    mb(before.0),
                    mb(before.1),
                    mb(after.0),
                    mb(after.1)
                ),
                "(reported)",
                None,
            );
        }
    }
    Ok(())
}
