//! Jobs through the REST API: posting, waiting, timing a job (`RunOut`), fresh runs.

use super::*;

// ---------------------------------------------------------------------------------------------
// Jobs through the API
// ---------------------------------------------------------------------------------------------

pub(crate) async fn post_job(
    http: &reqwest::Client,
    base: &str,
    domains: &[String],
    max_age: Option<u64>,
) -> Result<Value> {
    post_job_as(http, base, "bench", domains, max_age).await
}

/// `POST /jobs` for client `client` (no key: the service takes the body's `client_id`).
pub(crate) async fn post_job_as(
    http: &reqwest::Client,
    base: &str,
    client: &str,
    domains: &[String],
    max_age: Option<u64>,
) -> Result<Value> {
    let mut body = json!({"client_id": client, "domains": domains});
    if let Some(m) = max_age {
        body["max_age_seconds"] = json!(m);
    }
    let r = http.post(format!("{base}/jobs")).json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if status.as_u16() != 201 {
        bail!("POST /jobs answered {status}: {v}");
    }
    Ok(v)
}

pub(crate) async fn wait_job(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    limit: Duration,
) -> Result<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let v: Value = http
            .get(format!("{base}/jobs/{id}"))
            .send()
            .await?
            .json()
            .await?;
        let st = v["status"].as_str().unwrap_or("");
        if st == "completed" || st == "failed" {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("job {id} not finished after {limit:?}: {v}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) fn job_limit(n: usize) -> Duration {
    Duration::from_secs(120 + n as u64 / 100)
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RunOut {
    pub(crate) n: usize,
    pub(crate) wall: f64,
    pub(crate) create: f64,
    pub(crate) net: Snapshot,
    pub(crate) hwm_kb: u64,
    pub(crate) svc_cpu: f64,
    pub(crate) harness_cpu: f64,
    pub(crate) completed: i64,
    failed: i64,
}

impl RunOut {
    pub(crate) fn rate(&self) -> f64 {
        self.n as f64 / self.wall
    }
    pub(crate) fn http_per_domain(&self) -> f64 {
        self.net.http as f64 / self.n as f64
    }
}

/// One job over `n` sites on a deployment; from `POST /jobs` to `completed`.
pub(crate) async fn timed_job(
    ctx: &Ctx,
    net: &FakeInternet,
    d: &Deployment,
    n: usize,
    max_age: Option<u64>,
) -> Result<(RunOut, String)> {
    let doms = domains(n);
    let before = net.snapshot();
    let cpu0 = d.cpu();
    let self0 = cpu_secs("self");
    let t0 = Instant::now();
    let created = post_job(&ctx.http, &d.base, &doms, max_age).await?;
    let create = t0.elapsed().as_secs_f64();
    let id = created["job_id"].as_str().unwrap_or_default().to_owned();
    let job = wait_job(&ctx.http, &d.base, &id, job_limit(n)).await?;
    let wall = t0.elapsed().as_secs_f64();
    let out = RunOut {
        n,
        wall,
        create,
        net: net.snapshot().minus(before),
        hwm_kb: d.hwm_kb(),
        svc_cpu: d.cpu() - cpu0,
        harness_cpu: cpu_secs("self") - self0,
        completed: job["completed"].as_i64().unwrap_or(-1),
        failed: job["failed"].as_i64().unwrap_or(-1),
    };
    println!(
        "    {n} domains: {:.2}s = {:.0}/s (create {:.2}s), {}+{} ok/failed, {:.2} http req/domain \
         ({} tls refused, {} tls ok), peak RSS {:.0} MB, CPU service {:.1}s harness {:.1}s",
        out.wall,
        out.rate(),
        out.create,
        out.completed,
        out.failed,
        out.http_per_domain(),
        out.net.tls_refused,
        out.net.tls_ok,
        mb(out.hwm_kb),
        out.svc_cpu,
        out.harness_cpu
    );
    if out.failed > 0 {
        eprintln!("    WARNING: {} domains failed", out.failed);
    }
    Ok((out, id))
}

/// `runs` fresh deployments, one job each.
pub(crate) async fn fresh_runs(
    ctx: &Ctx,
    net: &FakeInternet,
    n: usize,
    runs: usize,
    mk: impl Fn() -> DeployOpts<'static>,
) -> Result<Vec<RunOut>> {
    let mut v = Vec::new();
    for _ in 0..runs {
        let d = ctx.deploy(Some(net), mk()).await?;
        v.push(timed_job(ctx, net, &d, n, None).await?.0);
    }
    Ok(v)
}

pub(crate) fn embedded() -> DeployOpts<'static> {
    DeployOpts {
        db: Db::Sqlite,
        workers: 0,
        api_no_worker: false,
        env: vec![],
        cache: false,
    }
}

/// The fleet: PostgreSQL and Redis, `serve --no-worker` and two worker processes.
pub(crate) fn fleet() -> DeployOpts<'static> {
    DeployOpts {
        db: Db::Postgres,
        workers: 2,
        api_no_worker: true,
        env: vec![],
        cache: false,
    }
}

pub(crate) fn summarize(runs: &[RunOut]) -> (f64, f64) {
    let rates: Vec<f64> = runs.iter().map(RunOut::rate).collect();
    let walls: Vec<f64> = runs.iter().map(|r| r.wall).collect();
    (median(&rates), median(&walls))
}

/// The bulk fake internet: `sites` sites answering at once, over HTTPS when `tls`, and also
/// on ports 80 and 443 when `low_ports` (for names looked up by DNS, and for the peer).
pub(crate) async fn bulk_net(
    ctx: &Ctx,
    sites: usize,
    tls: bool,
    low_ports: bool,
) -> Result<FakeInternet> {
    FakeInternet::start(
        NetOpts {
            tls,
            latency: Duration::ZERO,
            sites,
            low_ports,
            gated: false,
            web: None,
        },
        ctx.tmp.path(),
    )
    .await
}

pub(crate) async fn plain_net(ctx: &Ctx, sites: usize, latency: Duration) -> Result<FakeInternet> {
    FakeInternet::start(
        NetOpts {
            tls: false,
            latency,
            sites,
            low_ports: false,
            gated: false,
            web: None,
        },
        ctx.tmp.path(),
    )
    .await
}

/// Every result of job `id`, read back from the REST API a page of 500 at a time.
pub(crate) async fn all_results(ctx: &Ctx, d: &Deployment, id: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for page in 1.. {
        let v: Value = ctx
            .http
            .get(format!(
                "{}/jobs/{id}/results?page={page}&per_page=500",
                d.base
            ))
            .send()
            .await?
            .json()
            .await?;
        let rs = v["results"].as_array().cloned().unwrap_or_default();
        let last = rs.len() < 500;
        out.extend(rs);
        if last {
            break;
        }
    }
    Ok(out)
}
