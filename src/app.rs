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
use crate::retention::{Retention, RetentionSettings};
use crate::store::Store;
use crate::worker::{WorkerPool, WorkerSettings};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
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
        let events = match &config.redis_url {
            Some(url) => Events::redis(
                url,
                &config.redis_prefix,
                config.redis_ca_cert.as_deref(),
                metrics.clone(),
            )?,
            None => Events::in_process(),
        };
        // One finder (one connection pool, one politeness budget) for the workers and the
        // icons' on-demand lookups.
        let finder = Arc::new(Finder::new(config.finder())?);
        let jobs = Jobs::new(store.clone(), events.clone(), rules(&config))
            .with_public_url(config.public_url.as_deref())
            .with_metrics(metrics.clone());
        let icons = Icons::new(
            store.clone(),
            jobs.clone(),
            finder.clone(),
            IconSettings {
                cache_control: config.icon_cache_control.clone(),
                find_timeout: config.icon_find_timeout,
                public: config.icons_public,
                resize_cache_bytes: config.icon_resize_cache_bytes,
                render_per_minute: config.icon_render_per_minute,
            },
            metrics.clone(),
        );
        // Past the finder's own longest find (its deadline and all of its waiting for slots),
        // so the worker's backstop only ever catches a stuck find.
        let find_timeout = finder.max_find_time() + std::time::Duration::from_secs(5);
        let worker = if roles.worker && config.worker_concurrency > 0 {
            Some(WorkerPool::new(
                store.clone(),
                finder,
                events.clone(),
                metrics.clone(),
                WorkerSettings {
                    concurrency: config.worker_concurrency,
                    lease: config.worker_lease,
                    poll: config.worker_poll,
                    max_tries: config.fetch_max_tries,
                    backoff: config.fetch_retry_backoff,
                    find_timeout,
                    shutdown_grace: config.shutdown_grace,
                },
            ))
        } else {
            None
        };
        // A worker-only process serves just health and metrics, and only when asked to.
        let port = match (roles.api, config.worker_http_port) {
            (true, _) => Some(config.port),
            (false, port) => port,
        };
        let listener = if let Some(port) = port {
            let addr = SocketAddr::new(config.host, port);
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?,
            )
        } else {
            None
        };
        let accounts = Accounts::new(
            store.clone(),
            LinkSigner::new(
                config.download_url_secret.as_deref(),
                config.download_url_ttl,
            ),
        );
        let mut ops_listener = None;
        if roles.api {
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
        let retention = (roles.api || roles.worker).then(|| {
            Retention::new(
                store.clone(),
                RetentionSettings {
                    max_age: (config.retention_days > 0)
                        .then(|| std::time::Duration::from_secs(config.retention_days * 86_400)),
                    interval: config.retention_interval,
                    batch_rows: config.retention_batch_rows,
                    cache_max_age: config.cache_max_age,
                },
                metrics.clone(),
            )
        });
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
            },
            store,
            listener,
            ops_listener,
            worker,
            retention,
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
        let worker = self.worker.map(|pool| {
            let token = shutdown.clone();
            tokio::spawn(async move { pool.run(token).await })
        });
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
                let timeouts = HttpTimeouts {
                    header: self.state.config.http_header_timeout,
                    idle: self.state.config.http_idle_timeout,
                    grace: self.state.config.shutdown_grace,
                };
                Some(tokio::spawn(serve_http(listener, app, timeouts, token)))
            }
            None => None,
        };
        let ops = self.ops_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "health and metrics listening (OPS_ADDR)");
            }
            let timeouts = HttpTimeouts {
                header: self.state.config.http_header_timeout,
                idle: self.state.config.http_idle_timeout,
                grace: self.state.config.shutdown_grace,
            };
            tokio::spawn(serve_http(
                listener,
                api_ops_router(self.state.clone()),
                timeouts,
                shutdown.clone(),
            ))
        });
        if let Some(api) = api {
            match api.await {
                Ok(()) => tracing::info!("API stopped"),
                Err(e) => tracing::error!(error = %e, "API task panicked"),
            }
            // WebSockets left hyper at their upgrade, so serving HTTP does not wait for them;
            // they complete their subscriptions and close within the same grace period.
            let started = stopping.await.unwrap_or_else(|_| Instant::now());
            let grace = self.state.config.shutdown_grace;
            let cut = self.state.ws_connections.drain(started + grace).await;
            if cut > 0 {
                tracing::warn!(
                    cut,
                    "WebSocket connections still open after SHUTDOWN_GRACE_SECS were cut"
                );
            }
        }
        if let Some(ops) = ops
            && let Err(e) = ops.await
        {
            tracing::error!(error = %e, "ops listener task panicked");
        }
        if let Some(worker) = worker
            && let Err(e) = worker.await
        {
            tracing::error!(error = %e, "worker task panicked");
        }
        if let Some(retention) = retention
            && let Err(e) = retention.await
        {
            tracing::error!(error = %e, "retention task panicked");
        }
        Ok(())
    }
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
