//! The service as real processes: deployments, spawning, CPU/RSS sampling, the run context `Ctx`.

use super::*;

// ---------------------------------------------------------------------------------------------
// The service as real processes
// ---------------------------------------------------------------------------------------------

pub(crate) struct Proc {
    child: Child,
    name: String,
    pub(crate) log: PathBuf,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
    pub(crate) fn hwm_kb(&self) -> u64 {
        proc_status_kb(self.pid(), "VmHWM:")
    }
    pub(crate) fn rss_kb(&self) -> u64 {
        proc_status_kb(self.pid(), "VmRSS:")
    }
    pub(crate) fn cpu(&self) -> f64 {
        cpu_secs(&self.pid().to_string())
    }
    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Db {
    Sqlite,
    Postgres,
}

/// One fresh deployment: a database, an API process, maybe worker processes.
pub(crate) struct Deployment {
    pub(crate) api: Proc,
    workers: Vec<Proc>,
    pub(crate) base: String,
    /// The `DATABASE_URL` the processes were given.
    pub(crate) database_url: String,
    pg_db: Option<(String, String)>,
    pub(crate) _dir: tempfile::TempDir,
}

impl Deployment {
    fn procs(&self) -> impl Iterator<Item = &Proc> {
        std::iter::once(&self.api).chain(self.workers.iter())
    }
    pub(crate) fn cpu(&self) -> f64 {
        self.procs().map(Proc::cpu).sum()
    }
    pub(crate) fn hwm_kb(&self) -> u64 {
        self.procs().map(Proc::hwm_kb).max().unwrap_or(0)
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
        let _ = self.api.child.kill();
        let _ = self.api.child.wait();
        if let Some((server, name)) = &self.pg_db {
            let _ = psql(
                server,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

fn psql(server: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .arg(format!("{server}/postgres"))
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .context("psql")?;
    if !out.status.success() {
        bail!("psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

pub(crate) struct DeployOpts<'a> {
    pub(crate) db: Db,
    /// Worker processes besides the API (Postgres fleet); 0 = the API runs the workers.
    pub(crate) workers: usize,
    pub(crate) api_no_worker: bool,
    pub(crate) env: Vec<(&'a str, String)>,
    pub(crate) cache: bool,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub(crate) struct Ctx {
    pub(crate) opts: Opts,
    pub(crate) bin: PathBuf,
    pub(crate) http: reqwest::Client,
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) rows: Vec<Row>,
    pub(crate) notes: Vec<String>,
    /// Plain-HTTP embedded throughput runs done in this invocation (reused by limit).
    pub(crate) plain_runs: Vec<RunOut>,
}

pub(crate) struct Row {
    pub(crate) figure: String,
    pub(crate) value: String,
    pub(crate) target: String,
    pub(crate) pass: Option<bool>,
}

impl Ctx {
    pub(crate) fn row(&mut self, figure: &str, value: String, target: &str, pass: Option<bool>) {
        let verdict = match pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "-",
        };
        println!("  >> {figure}: {value}   [target {target}] {verdict}");
        self.rows.push(Row {
            figure: figure.into(),
            value,
            target: target.into(),
            pass,
        });
    }

    pub(crate) fn note(&mut self, s: String) {
        println!("  .. {s}");
        self.notes.push(s);
    }

    pub(crate) async fn deploy(
        &self,
        net: Option<&FakeInternet>,
        o: DeployOpts<'_>,
    ) -> Result<Deployment> {
        self.deploy_bin(&self.bin, net, o).await
    }

    /// As [`Ctx::deploy`], with the service binary `bin` (`--baseline-bin`: an earlier build).
    pub(crate) async fn deploy_bin(
        &self,
        bin: &Path,
        net: Option<&FakeInternet>,
        o: DeployOpts<'_>,
    ) -> Result<Deployment> {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = tempfile::Builder::new()
            .prefix("deploy-")
            .tempdir_in(self.tmp.path())?;
        let port = free_port()?;
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOST".into(), "127.0.0.1".into()),
            ("PORT".into(), port.to_string()),
            ("FETCH_ALLOW_PRIVATE_NETWORKS".into(), "true".into()),
            ("RATE_LIMIT_JOBS_PER_HOUR".into(), "0".into()),
            ("RATE_LIMIT_DOMAINS_PER_HOUR".into(), "0".into()),
            (
                "MAX_DOMAINS_PER_JOB".into(),
                self.opts.big.max(100_000).to_string(),
            ),
            ("RUST_LOG".into(), "warn".into()),
        ];
        // The allocator's settings reach the service, to measure them (`MIMALLOC_PURGE_DELAY`…).
        env.extend(std::env::vars().filter(|(k, _)| k.starts_with("MIMALLOC_")));
        if !o.cache {
            env.push(("CACHE_MAX_AGE_SECS".into(), "0".into()));
        }
        if let Some(net) = net {
            env.push(("FETCH_RESOLVE".into(), net.resolve()));
            // The whole fake internet is one address; real sites are spread over many, so the
            // per-address politeness limit would measure itself instead of the service. The
            // slow web has addresses like the real one, and keeps the service's limit.
            if net.one_address() {
                env.push(("FETCH_PER_ADDRESS_CONCURRENCY".into(), "10000".into()));
            }
            if let Some(ca) = &net.ca_file {
                env.push(("FETCH_EXTRA_ROOT_CERTS".into(), ca.display().to_string()));
            }
        }
        let mut pg_db = None;
        match o.db {
            Db::Sqlite => env.push((
                "DATABASE_URL".into(),
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("bench.db").display()
                ),
            )),
            Db::Postgres => {
                let name = format!("ffbench_{}_{}", std::process::id(), seq);
                psql(&self.opts.pg, &format!("CREATE DATABASE {name}"))?;
                pg_db = Some((self.opts.pg.clone(), name.clone()));
                env.push(("DATABASE_URL".into(), format!("{}/{}", self.opts.pg, name)));
                env.push(("REDIS_URL".into(), self.opts.redis.clone()));
                env.push((
                    "REDIS_PREFIX".into(),
                    format!("ffbench-{}-{}", std::process::id(), seq),
                ));
            }
        }
        for (k, v) in o.env {
            env.retain(|(a, _)| a != k);
            env.push((k.to_owned(), v));
        }
        if o.db == Db::Postgres {
            let out = Command::new(bin)
                .arg("migrate")
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .current_dir(dir.path())
                .output()?;
            if !out.status.success() {
                bail!("migrate: {}", String::from_utf8_lossy(&out.stderr));
            }
            env.push(("RUN_MIGRATIONS".into(), "false".into()));
        }
        let spawn = |name: &str, args: &[&str]| -> Result<Proc> {
            let log = dir.path().join(format!("{name}.log"));
            let f = std::fs::File::create(&log)?;
            let child = Command::new(bin)
                .args(args)
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(f.try_clone()?)
                .stderr(f)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            Ok(Proc {
                child,
                name: name.into(),
                log,
            })
        };
        let api_args: &[&str] = if o.api_no_worker || o.workers > 0 {
            &["serve", "--no-worker"]
        } else {
            &["serve"]
        };
        let api = spawn("api", api_args)?;
        let mut workers = Vec::new();
        for i in 0..o.workers {
            workers.push(spawn(&format!("worker{i}"), &["worker"])?);
        }
        let database_url = env
            .iter()
            .find(|(k, _)| k == "DATABASE_URL")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut d = Deployment {
            api,
            workers,
            base: format!("http://127.0.0.1:{port}"),
            database_url,
            pg_db,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", d.base)).send().await
                && r.status().is_success()
            {
                break;
            }
            for p in d.workers.iter_mut().chain(std::iter::once(&mut d.api)) {
                if let Ok(Some(st)) = p.child.try_wait() {
                    bail!("{} exited ({st}):\n{}", p.name, p.log_tail());
                }
            }
            if Instant::now() > deadline {
                bail!("the service did not become ready:\n{}", d.api.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(d)
    }
}
