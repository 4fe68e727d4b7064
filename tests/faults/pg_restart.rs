//! PostgreSQL stopped mid-job for longer than a lease, then started again, under two live
//! workers. This must never touch the machine's shared server, so it runs a throw-away one of
//! its own on another port, and only when `FAULTS_PG_BIN` names the directory holding
//! `initdb` and `pg_ctl` (e.g. `/usr/lib/postgresql/15/bin`; `.ci/faults` sets it).

use crate::fake::{FakeInternet, Sites};
use crate::harness::{
    PgDb, Proc, base_env, check_invariants, create_job, domains, job_row, migrated_store,
    one_at_a_time, wait_for, wait_job_done,
};
use favicon_finder::store::Store;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use tokio::time::Instant;

/// A PostgreSQL server in a temporary data directory, stopped (immediately) when dropped.
/// PostgreSQL refuses to run as root, so as root its tools run as the `postgres` user.
struct PgServer {
    bin: PathBuf,
    data: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl PgServer {
    async fn init(bin: PathBuf) -> Self {
        let data = tempfile::Builder::new()
            .prefix("ff-faults-pg-")
            .tempdir()
            .unwrap();
        let uid = Command::new("id").arg("-u").output().unwrap();
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if as_postgres {
            let chown = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(data.path())
                .status()
                .unwrap();
            assert!(chown.success(), "chown of the data directory failed");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Self {
            bin,
            data,
            port,
            as_postgres,
        };
        let dir = server.data.path().display().to_string();
        server
            .run(
                "initdb",
                &["-D", &dir, "-U", "postgres", "-A", "trust", "--no-sync"],
            )
            .await;
        server
    }

    /// Runs one of the server's tools to completion; panics with its output on failure.
    async fn run(&self, tool: &str, args: &[&str]) {
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        };
        command.args(args);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            output.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    async fn start(&self) {
        let dir = self.data.path().display().to_string();
        // Loopback only, the socket in the data directory, no fsync: it is thrown away.
        let options = format!(
            "-p {} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        let log = format!("{dir}/server.log");
        self.run(
            "pg_ctl",
            &["-D", &dir, "-o", &options, "-l", &log, "-w", "start"],
        )
        .await;
    }

    async fn stop(&self) {
        let dir = self.data.path().display().to_string();
        self.run("pg_ctl", &["-D", &dir, "-m", "fast", "-w", "stop"])
            .await;
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let dir = self.data.path().display().to_string();
        let args = ["-D", dir.as_str(), "-m", "immediate", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_ctl)
                .args(args)
                .output()
        } else {
            Command::new(pg_ctl).args(args).output()
        };
    }
}

/// What both cases start from: a PostgreSQL server of their own with a migrated database, a
/// fake internet whose every host answers after a delay, and the children's environment.
struct Outage {
    server: PgServer,
    db: PgDb,
    store: Store,
    /// Serves the sites for as long as the case runs.
    _internet: FakeInternet,
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Outage {
    /// `None` when `FAULTS_PG_BIN` is not set (and may be missing: see `services`).
    async fn prepare(delay: Duration) -> Option<Self> {
        let Some(bin) = std::env::var_os("FAULTS_PG_BIN").filter(|b| !b.is_empty()) else {
            crate::services::available(
                "FAULTS_PG_BIN (the directory holding initdb and pg_ctl)",
                false,
            );
            return None;
        };
        let serial = one_at_a_time().await;
        let server = PgServer::init(PathBuf::from(bin)).await;
        server.start().await;
        let db = PgDb::create(&server.admin_url()).await;
        let store = migrated_store(&db.url).await;
        let internet = FakeInternet::start(Sites::every_host(delay)).await;
        let env = base_env(&db.url, &internet.resolve(&[]));
        Some(Self {
            server,
            db,
            store,
            _internet: internet,
            dir: tempfile::tempdir().unwrap(),
            env,
            _serial: serial,
        })
    }
}

/// PostgreSQL stopped mid-job for twelve lease lengths and started again: the workers back off
/// (their logs say so), stay up, recover on their own, and the invariants hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_job() {
    let Some(mut world) = Outage::prepare(Duration::from_millis(300)).await else {
        return;
    };
    let lease = Duration::from_secs(1);
    world
        .env
        .insert("WORKER_LEASE_SECS".into(), lease.as_secs().to_string());
    let mut workers = [
        Proc::spawn("worker-a", &["worker"], &world.env, world.dir.path()),
        Proc::spawn("worker-b", &["worker"], &world.env, world.dir.path()),
    ];
    for w in &workers {
        w.owner(Duration::from_secs(30)).await;
    }

    let domains = domains("pgrestart", 200, 10);
    let job = create_job(&world.store, &domains).await;
    wait_for(
        "the job to be under way",
        Duration::from_secs(30),
        || async {
            let j = job_row(&world.store, job).await;
            j.completed + j.failed >= 40
        },
    )
    .await;
    let before = job_row(&world.store, job).await;
    world.server.stop().await;
    // Longer than a lease, and longer than the pool's 10 s acquire timeout: a shorter outage
    // only makes queries wait for a connection, and the workers' own backoff never runs.
    // The outage itself is the scenario, so its length is a plain wait.
    let down = Duration::from_secs(12);
    tokio::time::sleep(down).await;
    for w in &mut workers {
        assert!(
            w.wait_exit(Duration::ZERO).await.is_none(),
            "{} is still running with the database down",
            w.name
        );
    }
    world.server.start().await;
    let restarted = Instant::now();

    let took = wait_job_done(&world.store, job, Duration::from_secs(30)).await;
    check_invariants(&world.store, job, &domains, 3).await;
    let mut complaints = Vec::new();
    for w in &workers {
        let n: usize = [
            "claim failed; backing off",
            "recording failed; retrying",
            "heartbeat failed",
        ]
        .iter()
        .map(|m| w.events(m).len())
        .sum();
        assert!(n > 0, "{} noticed the outage:\n{}", w.name, w.log());
        complaints.push(n);
    }
    let mut finished = 0;
    for w in &mut workers {
        w.terminate(Duration::from_secs(10)).await;
        finished += w.finished();
    }
    assert_eq!(finished, domains.len() as u64, "each row finished once");
    eprintln!(
        "pg restart: down {down:?} (lease {lease:?}) with {} of {} done; job done {took:?} after \
         the restart ({:?} since); warnings per worker {complaints:?}",
        before.completed + before.failed,
        before.total,
        restarted.elapsed()
    );
    world.db.drop_db().await;
}

/// SIGTERM while PostgreSQL is down: the worker cannot record or release, so it must not wait
/// for the database; it exits 0 soon after its grace period, leaving leases that expire. When
/// the database is back, another worker finishes the job and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_postgres_is_down_exits_in_time() {
    let Some(mut world) = Outage::prepare(Duration::from_millis(800)).await else {
        return;
    };
    let grace = Duration::from_secs(1);
    world.env.insert("WORKER_LEASE_SECS".into(), "3".into());
    world
        .env
        .insert("SHUTDOWN_GRACE_SECS".into(), grace.as_secs().to_string());
    let mut a = Proc::spawn("worker-a", &["worker"], &world.env, world.dir.path());
    let owner_a = a.owner(Duration::from_secs(30)).await;

    let domains = domains("pgdown", 24, 10);
    let job = create_job(&world.store, &domains).await;
    wait_for(
        "A to have rows in flight",
        Duration::from_secs(20),
        || async { crate::harness::leased_by(&world.store, owner_a).await == 8 },
    )
    .await;
    world.server.stop().await;
    let start = Instant::now();
    a.signal("TERM");
    let status = a.wait_exit(grace + Duration::from_secs(3)).await;
    let exited_in = start.elapsed();
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "exits 0 soon after the grace period, database or not:\n{}",
        a.log()
    );

    world.server.start().await;
    let b = Proc::spawn("worker-b", &["worker"], &world.env, world.dir.path());
    b.owner(Duration::from_secs(30)).await;
    let took = wait_job_done(&world.store, job, Duration::from_secs(30)).await;
    check_invariants(&world.store, job, &domains, 3).await;
    eprintln!(
        "pg down at SIGTERM: worker exited 0 in {exited_in:?} (grace {grace:?}); after the \
         restart another worker finished the job in {took:?}"
    );
    drop(b);
    world.db.drop_db().await;
}
