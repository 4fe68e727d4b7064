//! SeaORM entities, one file per table; the schema itself lives in the `migration` crate.

pub mod api_key;
pub mod client;
pub mod icon_blob;
pub mod job;
pub mod result;
