//! Logging and error reporting: `tracing` with `RUST_LOG` filtering, text or JSON lines, and
//! Sentry when `SENTRY_DSN` is set.
//!
//! With Sentry, error-level log events become Sentry events (warnings and info lines become
//! breadcrumbs), panics are reported by the panic integration, and the worker sends a
//! transaction per recorded batch. Per-domain work runs under its own hub tagged with `job_id`
//! and `domain`, so a panic or error while handling a domain carries both. No request bodies,
//! headers or personal data are sent (`send_default_pii` stays off), and configuration values
//! are never logged unredacted.

use crate::config::{Config, LogFormat};
use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
use std::io::IsTerminal;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The filter when `RUST_LOG` is unset: our own info, dependencies' warnings.
const DEFAULT_FILTER: &str =
    "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,hyper=warn,reqwest=warn";

/// Installs the global subscriber (and Sentry, when configured); call once, early in `main`,
/// and keep the returned guard until exit so queued Sentry events are flushed.
pub fn init(config: &Config) -> Option<sentry::ClientInitGuard> {
    let sentry = config.sentry_dsn.as_deref().map(|dsn| {
        let mut options = sentry::ClientOptions::default();
        options.release = sentry::release_name!();
        options.environment = config.sentry_environment.clone().map(Into::into);
        options.traces_sampling_strategy =
            sentry::TracesSamplingStrategy::FixedRate(config.sentry_traces_sample_rate);
        options.send_default_pii = false;
        options.attach_stacktrace = true;
        sentry::init((dsn, options))
    });
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Colour only for a person at a terminal: piped to a file or a log collector, escape
    // codes are noise. The check is on stderr because that is where the log goes (stdout
    // carries `find`'s results and `schema`'s SDL).
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let (text, json) = match config.log_format {
        LogFormat::Text => (Some(fmt), None),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .json()
                    .flatten_event(true),
            ),
        ),
    };
    // Error-level events become Sentry events; warnings and info lines the breadcrumbs that
    // come with them.
    let sentry_errors = sentry
        .as_ref()
        .map(|_| ErrorLayer::new().with_filter(LevelFilter::ERROR));
    let sentry_breadcrumbs = sentry
        .as_ref()
        .map(|_| BreadcrumbLayer::new().with_filter(LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(sentry_errors)
        .with(sentry_breadcrumbs)
        .init();
    sentry
}
