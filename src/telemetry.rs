//! Logging: `tracing` with `RUST_LOG` filtering, text or JSON lines.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// The filter when `RUST_LOG` is unset: our own info, dependencies' warnings.
const DEFAULT_FILTER: &str =
    "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,hyper=warn,reqwest=warn";

/// Installs the global subscriber; call once, early in `main`.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
