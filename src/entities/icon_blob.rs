//! `icon_blob`: one stored icon, addressed by the SHA-256 of its bytes.

use sea_orm::entity::prelude::*;

/// One row of `icon_blob`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "icon_blob")]
pub struct Model {
    /// Lowercase hex SHA-256 of `bytes`: the content address, and the served ETag.
    #[sea_orm(primary_key, auto_increment = false)]
    pub sha256: String,
    /// The mime type sniffing confirmed (never the server's Content-Type).
    pub mime: String,
    /// The icon as the site served it.
    pub bytes: Vec<u8>,
    /// Real width in pixels (0 for an SVG without intrinsic size).
    pub width: i32,
    /// Real height in pixels.
    pub height: i32,
    /// `bytes.len()`, so storage can be summed without reading the bytes.
    pub size: i32,
    /// When first stored.
    pub created_at: DateTimeUtc,
}

/// `icon_blob` relates to nothing by key (results point at it by value).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
