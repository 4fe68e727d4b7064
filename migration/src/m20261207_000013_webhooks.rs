//! Webhooks: a client's endpoints (`webhook_endpoint`), the outbox of events to send to them
//! (`webhook_delivery`, one row per event and endpoint, written in the transaction that
//! finishes or cancels the job, then leased by workers like a domain), and the log of every
//! attempt (`webhook_attempt`), which the deliveries list shows.
//!
//! Secrets are stored sealed (AES-256-GCM under `WEBHOOK_SECRET_KEY`), so a dump of these
//! tables alone cannot sign an event.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookEndpoint {
    Table,
    Id,
    ClientId,
    Url,
    Description,
    Events,
    Secret,
    PreviousSecret,
    PreviousSecretUntil,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
    FailingSince,
    DisabledAt,
    DisabledReason,
}

#[derive(DeriveIden)]
enum WebhookDelivery {
    Table,
    Id,
    EndpointId,
    EventId,
    EventType,
    JobId,
    EventAt,
    Payload,
    Status,
    Attempts,
    RunAt,
    LeaseOwner,
    LeaseUntil,
    CreatedAt,
    DeliveredAt,
    LastStatusCode,
    LastError,
}

#[derive(DeriveIden)]
enum WebhookAttempt {
    Table,
    Id,
    DeliveryId,
    Attempt,
    At,
    StatusCode,
    LatencyMs,
    Error,
}

/// (name, table and columns, clause) of the indexes; partial ones written out, because the
/// queries repeat their clauses (SQLite uses a partial index only when the query implies it).
const INDEXES: [(&str, &str, &str); 4] = [
    (
        "idx_webhook_endpoint_client",
        "webhook_endpoint (client_id, created_at)",
        "deleted_at IS NULL",
    ),
    (
        "idx_webhook_delivery_due",
        "webhook_delivery (run_at)",
        "status = 'pending'",
    ),
    (
        "idx_webhook_delivery_endpoint",
        "webhook_delivery (endpoint_id, created_at)",
        "1 = 1",
    ),
    (
        "idx_webhook_attempt_delivery",
        "webhook_attempt (delivery_id, attempt)",
        "1 = 1",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookEndpoint::Table)
                    .col(pk_uuid(WebhookEndpoint::Id))
                    .col(uuid(WebhookEndpoint::ClientId))
                    .col(text(WebhookEndpoint::Url))
                    .col(text_null(WebhookEndpoint::Description))
                    .col(text(WebhookEndpoint::Events))
                    .col(text(WebhookEndpoint::Secret))
                    .col(text_null(WebhookEndpoint::PreviousSecret))
                    .col(timestamp_with_time_zone_null(
                        WebhookEndpoint::PreviousSecretUntil,
                    ))
                    .col(timestamp_with_time_zone(WebhookEndpoint::CreatedAt))
                    .col(timestamp_with_time_zone(WebhookEndpoint::UpdatedAt))
                    .col(timestamp_with_time_zone_null(WebhookEndpoint::DeletedAt))
                    .col(timestamp_with_time_zone_null(WebhookEndpoint::FailingSince))
                    .col(timestamp_with_time_zone_null(WebhookEndpoint::DisabledAt))
                    .col(text_null(WebhookEndpoint::DisabledReason))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDelivery::Table)
                    .col(pk_uuid(WebhookDelivery::Id))
                    .col(uuid(WebhookDelivery::EndpointId))
                    .col(uuid(WebhookDelivery::EventId))
                    .col(string_len(WebhookDelivery::EventType, 32))
                    .col(uuid_null(WebhookDelivery::JobId))
                    .col(timestamp_with_time_zone(WebhookDelivery::EventAt))
                    .col(text_null(WebhookDelivery::Payload))
                    .col(string_len(WebhookDelivery::Status, 16))
                    .col(integer(WebhookDelivery::Attempts).default(0))
                    .col(timestamp_with_time_zone(WebhookDelivery::RunAt))
                    .col(uuid_null(WebhookDelivery::LeaseOwner))
                    .col(timestamp_with_time_zone_null(WebhookDelivery::LeaseUntil))
                    .col(timestamp_with_time_zone(WebhookDelivery::CreatedAt))
                    .col(timestamp_with_time_zone_null(WebhookDelivery::DeliveredAt))
                    .col(integer_null(WebhookDelivery::LastStatusCode))
                    .col(text_null(WebhookDelivery::LastError))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookAttempt::Table)
                    .col(pk_uuid(WebhookAttempt::Id))
                    .col(uuid(WebhookAttempt::DeliveryId))
                    .col(integer(WebhookAttempt::Attempt))
                    .col(timestamp_with_time_zone(WebhookAttempt::At))
                    .col(integer_null(WebhookAttempt::StatusCode))
                    .col(integer(WebhookAttempt::LatencyMs))
                    .col(text_null(WebhookAttempt::Error))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for (name, on, clause) in INDEXES {
            let clause = if clause == "1 = 1" {
                String::new()
            } else {
                format!(" WHERE {clause}")
            };
            db.execute_unprepared(&format!("CREATE INDEX {name} ON {on}{clause}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        for table in ["webhook_attempt", "webhook_delivery", "webhook_endpoint"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
