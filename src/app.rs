//! Running the service: build it from a config, then serve the API and run the worker pool
//! until shutdown.

use crate::api::http::{HttpTimeouts, serve_http};
use crate::api::ws::WsConnections;
use crate::api::{AppState, api_ops_router, ops_router, router};
use crate::auth::{Accounts, LinkSigner};
use crate::config::AuthMode;
use crate::config::Config;
use crate::events::Events;
use crate::finder::Finder;
use crate::icons::{IconSettings, Icons};
use crate::jobs::{Jobs, RateLimits, Rules};
use crate::metrics::Metrics;
use crate::politeness::{LiveWorkers, Politeness, PolitenessSettings};
use crate::retention::{Retention, RetentionSettings};
use crate::store::Store;
use crate::watches::schedule::Scheduler;
use crate::watches::{WatchSettings, Watches};
use crate::webhooks::deliver::Deliverer;
use crate::webhooks::{WebhookSettings, Webhooks};
use crate::worker::{WorkerPool, WorkerSettings};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Which parts of the service this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// Serve the HTTP API.
    pub api: bool,
    /// Run a worker pool (also needs `WORKER_CONCURRENCY` > 0).
    pub worker: bool,
}

/// A built service, ready to run: connected, migrated, listening.
pub struct Application {
    /// Serve the whole API on the listener, or only health and metrics.
    api: bool,
    state: AppState,
    /// The database, for tests and tools; handlers reach it only through the core.
    store: Store,
    listener: Option<TcpListener>,
    /// `OPS_ADDR`: health and metrics apart from the API.
    ops_listener: Option<TcpListener>,
    worker: Option<WorkerPool>,
    /// The retention task; every process runs one, and a lease lets one of them work.
    retention: Option<Retention>,
    /// The webhook deliverer, in processes that run workers.
    deliverer: Option<Deliverer>,
    /// The watches' scheduler, in processes that run workers.
    scheduler: Option<Scheduler>,
}

impl Application {
    /// Connects to the database (migrating it unless told not to), builds the finder and binds
    /// the listener, so that failures show before anything runs.
    pub async fn build(config: Config, roles: Roles) -> anyhow::Result<Self> {
        let store = Store::connect(&config.database_url, config.database_pool_size).await?;
        if config.run_migrations {
            store.migrate().await?;
        }
        let metrics = Arc::new(Metrics::new());
        let events = events(&config, &metrics)?;
        let politeness = politeness(&config, &metrics, &store).await?;
        // One finder (one connection pool, one politeness budget) for the workers and the
        // icons' on-demand lookups.
        let finder = Arc::new(match politeness.slots() {
            Some(fleet) => Finder::with_fleet(config.finder(), fleet)?,
            None => Finder::new(config.finder())?,
        });
        let jobs = Jobs::new(store.clone(), events.clone(), rules(&config))
            .with_public_url(config.public_url.as_deref())
            .with_metrics(metrics.clone());
        let icons = Icons::new(
            store.clone(),
            jobs.clone(),
            finder.clone(),
            icon_settings(&config),
            metrics.clone(),
        );
        let worker = (roles.worker && config.worker_concurrency > 0).then(|| {
            worker_pool(
                &config,
                store.clone(),
                finder,
                events.clone(),
                metrics.clone(),
            )
        });
        let listener = bind_listener(&config, roles).await?;
        let accounts = Accounts::new(
            store.clone(),
            LinkSigner::new(
                config.download_url_secret.as_deref(),
                config.download_url_ttl,
            ),
        );
        let webhooks = Webhooks::new(
            store.clone(),
            config.webhooks.secret_key.as_deref(),
            crate::finder::resolve::GuardedResolver::new(&config.finder())?,
            webhook_settings(&config),
        )?;
        let deliverer = (roles.worker && config.worker_concurrency > 0)
            .then(|| {
                Deliverer::new(
                    &webhooks,
                    accounts.signer().clone(),
                    config.public_url.clone(),
                    metrics.clone(),
                )
            })
            .transpose()?;
        let scheduler = (roles.worker && config.worker_concurrency > 0)
            .then(|| Scheduler::new(store.clone(), events.clone(), config.watches.tick));
        let watches = Watches::new(store.clone(), watch_settings(&config));
        let mut ops_listener = None;
        if roles.api {
            prepare_access(&config, &accounts).await?;
            if let Some(addr) = config.ops_addr {
                ops_listener = Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (OPS_ADDR): {e}"))?,
                );
            }
        }
        let ws_connections = Arc::new(WsConnections::new(
            config.ws_max_connections,
            config.ws_max_connections_per_ip,
        ));
        let retention = (roles.api || roles.worker)
            .then(|| Retention::new(store.clone(), retention_settings(&config), metrics.clone()));
        let config = Arc::new(config);
        Ok(Self {
            api: roles.api,
            state: AppState {
                jobs,
                icons,
                events,
                config,
                metrics,
                shutdown: CancellationToken::new(),
                ws_connections,
                recorder: worker
                    .as_ref()
                    .map(|pool| pool.health() as Arc<dyn crate::model::Liveness>),
                accounts,
                politeness,
                webhooks,
                watches,
            },
            store,
            listener,
            ops_listener,
            worker,
            retention,
            deliverer,
            scheduler,
        })
    }

    /// The port the API listens on, if this process serves it.
    pub fn port(&self) -> Option<u16> {
        self.listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    /// The port of the `OPS_ADDR` listener, if there is one.
    pub fn ops_port(&self) -> Option<u16> {
        self.ops_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    /// The shared state, for tests and tools.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The database handle, for tests and tools.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Takes the worker pool out before the service runs, which then runs without one: a
    /// test drives the pool itself with [`WorkerPool::drain`] instead of waiting for it.
    pub fn take_worker(&mut self) -> Option<WorkerPool> {
        self.worker.take()
    }

    /// Serves the API and runs the workers until `shutdown` is cancelled, then stops both
    /// gracefully and reports how each ended.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let state_shutdown = self.state.shutdown.clone();
        let outer = shutdown.clone();
        let stopping = tokio::spawn(async move {
            outer.cancelled().await;
            state_shutdown.cancel();
            Instant::now()
        });
        let retention = self
            .retention
            .map(|task| tokio::spawn(task.run(shutdown.clone())));
        let deliverer = self
            .deliverer
            .map(|task| tokio::spawn(task.run(shutdown.clone())));
        let scheduler = self
            .scheduler
            .map(|task| tokio::spawn(task.run(shutdown.clone())));
        let worker = self.worker.map(|pool| {
            let token = shutdown.clone();
            tokio::spawn(async move { pool.run(token).await })
        });
        let timeouts = http_timeouts(&self.state.config);
        let api = match self.listener {
            Some(listener) => {
                let addr = listener.local_addr()?;
                let app = if self.api {
                    tracing::info!(%addr, "API listening; GraphiQL at http://{addr}/graphql");
                    router(self.state.clone())
                } else {
                    tracing::info!(%addr, "health and metrics listening");
                    ops_router(self.state.clone())
                };
                let token = shutdown.clone();
                Some(tokio::spawn(serve_http(listener, app, timeouts, token)))
            }
            None => None,
        };
        let ops = self.ops_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "health and metrics listening (OPS_ADDR)");
            }
            let app = api_ops_router(self.state.clone());
            tokio::spawn(serve_http(listener, app, timeouts, shutdown.clone()))
        });
        if let Some(api) = api {
            match api.await {
                Ok(()) => tracing::info!("API stopped"),
                Err(e) => tracing::error!(error = %e, "API task panicked"),
            }
            let started = stopping.await.unwrap_or_else(|_| Instant::now());
            drain_websockets(&self.state, started).await;
        }
        join_task(ops, "ops listener").await;
        join_task(worker, "worker").await;
        join_task(retention, "retention").await;
        join_task(deliverer, "webhook deliverer").await;
        join_task(scheduler, "watch scheduler").await;
        Ok(())
    }
}

/// WebSockets left hyper at their upgrade, so serving HTTP does not wait for them; they
/// complete their subscriptions and close within the same grace period, counted from when
/// shutdown `started`.
async fn drain_websockets(state: &AppState, started: Instant) {
    let grace = state.config.shutdown_grace;
    let cut = state.ws_connections.drain(started + grace).await;
    if cut > 0 {
        tracing::warn!(
            cut,
            "WebSocket connections still open after SHUTDOWN_GRACE_SECS were cut"
        );
    }
}

/// Waits for a background task, if it runs, and logs a panic by the task's name.
async fn join_task(task: Option<JoinHandle<()>>, what: &str) {
    if let Some(task) = task
        && let Err(e) = task.await
    {
        tracing::error!(error = %e, "{what} task panicked");
    }
}

/// The HTTP deadlines every listener of the process shares.
fn http_timeouts(config: &Config) -> HttpTimeouts {
    HttpTimeouts {
        header: config.http_header_timeout,
        idle: config.http_idle_timeout,
        grace: config.shutdown_grace,
    }
}

/// Events over Redis when `REDIS_URL` is set, so processes hear each other; in-process
/// otherwise.
fn events(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<Events> {
    Ok(match &config.redis_url {
        Some(url) => Events::redis(
            url,
            &config.redis_prefix,
            config.redis_ca_cert.as_deref(),
            metrics.clone(),
        )?,
        None => Events::in_process(),
    })
}

/// Fleet-wide politeness when `REDIS_URL` is set (every process that fetches shares the
/// limits), process-local otherwise. The fleet's size without Redis is the database's count of
/// live lease owners.
async fn politeness(
    config: &Config,
    metrics: &Metrics,
    store: &Store,
) -> anyhow::Result<Politeness> {
    let Some(url) = &config.redis_url else {
        return Ok(Politeness::process_local());
    };
    let finder = config.finder();
    let settings = PolitenessSettings {
        redis_url: url.clone(),
        ca_cert: config.redis_ca_cert.clone(),
        prefix: config.redis_prefix.clone(),
        per_host: finder.per_host_concurrency,
        per_address: finder.per_address_concurrency,
        lease: finder.max_slot_hold(),
    };
    let store = store.clone();
    let live_workers: LiveWorkers = Arc::new(move || {
        let store = store.clone();
        Box::pin(async move { Ok(store.live_workers().await?) })
    });
    Politeness::redis(settings, metrics, live_workers).await
}

/// The icon endpoint's settings, from the configuration's plain values.
fn icon_settings(config: &Config) -> IconSettings {
    IconSettings {
        cache_control: config.icon_cache_control.clone(),
        find_timeout: config.icon_find_timeout,
        public: config.icons_public,
        resize_cache_bytes: config.icon_resize_cache_bytes,
        render_per_minute: config.icon_render_per_minute,
        refresh_after: config.icon_refresh_after,
        refresh_per_minute: config.icon_refresh_per_minute,
    }
}

/// The retention task's settings; `RETENTION_DAYS=0` keeps jobs for ever.
fn retention_settings(config: &Config) -> RetentionSettings {
    RetentionSettings {
        max_age: (config.retention_days > 0)
            .then(|| std::time::Duration::from_secs(config.retention_days * 86_400)),
        interval: config.retention_interval,
        batch_rows: config.retention_batch_rows,
        cache_max_age: config.cache_max_age,
        check_max_age: config.watches.check_retention,
        history_max_age: config.watches.history,
    }
}

/// The worker pool, sharing the finder with the icons' on-demand lookups.
fn worker_pool(
    config: &Config,
    store: Store,
    finder: Arc<Finder>,
    events: Events,
    metrics: Arc<Metrics>,
) -> WorkerPool {
    // Past the finder's own longest find (its deadline and all of its waiting for slots),
    // so the worker's backstop only ever catches a stuck find.
    let find_timeout = finder.max_find_time() + std::time::Duration::from_secs(5);
    let settings = WorkerSettings {
        concurrency: config.worker_concurrency,
        max_share_per_job: config.worker_max_share_per_job,
        lease: config.worker_lease,
        poll: config.worker_poll,
        max_tries: config.fetch_max_tries,
        backoff: config.fetch_retry_backoff,
        find_timeout,
        shutdown_grace: config.shutdown_grace,
    };
    WorkerPool::new(store, finder, events, metrics, settings)
}

/// The main listener: the API's port, or for a worker-only process the health and metrics
/// port, and only when asked for one.
async fn bind_listener(config: &Config, roles: Roles) -> anyhow::Result<Option<TcpListener>> {
    let port = match (roles.api, config.worker_http_port) {
        (true, _) => Some(config.port),
        (false, port) => port,
    };
    let Some(port) = port else {
        return Ok(None);
    };
    let addr = SocketAddr::new(config.host, port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    Ok(Some(listener))
}

/// Before the API serves: the bootstrap key put in place, and a loud warning when keyless
/// requests can read more than whoever runs the service may expect.
async fn prepare_access(config: &Config, accounts: &Accounts) -> anyhow::Result<()> {
    if let Some(key) = &config.bootstrap_api_key {
        let key_id = accounts.bootstrap(key).await?;
        tracing::info!(%key_id, "BOOTSTRAP_API_KEY: admin key in place");
    }
    // Not fatal: with RUN_MIGRATIONS=false the key table may not exist yet.
    let issued = match config.auth_mode {
        AuthMode::Off => accounts.live_key_count().await.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "cannot count the issued keys");
            0
        }),
        AuthMode::Required => 0,
    };
    if issued > 0 {
        tracing::warn!(
            keys = issued,
            "AUTH_MODE=off WHILE API KEYS ARE ISSUED: a request without a key acts for the default client and reads every client's jobs, those of the keys' clients too; set AUTH_MODE=required, or revoke the keys (`favicon-finder keys revoke`)"
        );
    }
    if config.auth_mode == AuthMode::Off && !config.host.is_loopback() {
        tracing::warn!(
            host = %config.host,
            "AUTH_MODE=off on a non-loopback address: ANYONE WHO CAN REACH THIS PORT CAN READ EVERY CLIENT'S JOBS AND CREATE JOBS UNDER ANY NAME; set AUTH_MODE=required (and create keys) unless a gateway in front authenticates"
        );
    }
    Ok(())
}

/// The core's rules, from the configuration's plain values.
fn rules(config: &Config) -> Rules {
    Rules {
        max_domains_per_job: config.max_domains_per_job,
        rate_limits: RateLimits {
            jobs_per_hour: config.rate_limit_jobs_per_hour,
            domains_per_hour: config.rate_limit_domains_per_hour,
        },
        cache_max_age: config.cache_max_age,
        cache_failure_max_age: config.cache_failure_max_age,
        export_chunk_bytes: config.export_chunk_bytes,
        purge_batch_rows: config.retention_batch_rows,
    }
}

/// The watches' rules, from the configuration.
fn watch_settings(config: &Config) -> WatchSettings {
    WatchSettings {
        min_every: config.watches.min_every,
        max_domains: config.watches.max_domains,
        tick: config.watches.tick,
    }
}

/// The webhooks' settings, from the configuration.
fn webhook_settings(config: &Config) -> WebhookSettings {
    let w = &config.webhooks;
    WebhookSettings {
        backoff: crate::model::webhook::Backoff {
            base: w.retry_base,
            max: w.retry_max,
            max_attempts: w.max_attempts,
        },
        timeout: w.timeout,
        disable_after: w.disable_after,
        rotation_overlap: w.rotation_overlap,
        concurrency: w.concurrency,
        progress_interval: w.progress_interval,
        poll: w.poll,
        allow_private: config.fetch_allow_private_networks,
        extra_root_certs: config.fetch_extra_root_certs.clone(),
    }
}
