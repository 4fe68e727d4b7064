//! What the test binaries share: the fake internet (with its test CA and name servers), the
//! database and REST helpers, a webhook endpoint, and the rule for tests whose services are
//! missing. Each binary includes this folder as its `common` module and names its parts at its
//! root.

pub mod client;
pub mod db;
pub mod fake;
pub mod otlp;
pub mod redis;
pub mod relay;
pub mod services;
pub mod tls;
pub mod webhooks;
