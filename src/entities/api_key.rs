//! `api_key`: a client's key, stored as its SHA-256 only.

use sea_orm::entity::prelude::*;

/// One row of `api_key`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_key")]
pub struct Model {
    /// The key's id: what lists, logs and `keys revoke` name; never the key itself.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The client the key acts for (`client_id` in the API).
    pub client_id: String,
    /// A label for people (`--name`), empty when none was given.
    pub name: String,
    /// Space-separated scopes: `submit`, `read`, `admin`.
    pub scopes: String,
    /// Lower-case hex SHA-256 of the whole key; unique.
    #[sea_orm(unique)]
    pub hash: String,
    /// The key's first characters, so a person can tell which key they hold.
    pub prefix: String,
    /// When created.
    pub created_at: DateTimeUtc,
    /// When last accepted, to within a minute (writes are throttled).
    pub last_used_at: Option<DateTimeUtc>,
    /// When revoked; a revoked key is refused.
    pub revoked_at: Option<DateTimeUtc>,
}

/// `api_key` has no relations: a key may name a client that has not submitted a job yet.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
