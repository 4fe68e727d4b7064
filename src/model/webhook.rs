//! Webhooks' vocabulary: the events a client can subscribe to, a delivery's status, the retry
//! schedule, and the views every API shows of an endpoint and its deliveries.

use super::JobStatus;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// An event a webhook endpoint can be sent, named as the Standard Webhooks `type` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, async_graphql::Enum, utoipa::ToSchema)]
#[graphql(name = "WebhookEventType")]
pub enum WebhookEvent {
    /// `job.completed`: every domain of the job has its final result.
    JobCompleted,
    /// `job.failed`: the job ended and none of its domains found an icon.
    JobFailed,
    /// `job.cancelled`: the job was stopped before it ended.
    JobCancelled,
    /// `job.progress`: a running job's counts, at most once per `WEBHOOK_PROGRESS_INTERVAL_SECS`
    /// per job; only when asked for.
    JobProgress,
    /// `icon.changed`: the icon of a domain one of the client's watches holds changed (only
    /// changes the flapping rule reports).
    IconChanged,
    /// `webhook.test`: sent by "send test event"; every endpoint takes it.
    WebhookTest,
}

impl WebhookEvent {
    /// The events an endpoint can subscribe to, in the order the APIs list them.
    pub const SUBSCRIBABLE: [Self; 5] = [
        Self::JobCompleted,
        Self::JobFailed,
        Self::JobCancelled,
        Self::JobProgress,
        Self::IconChanged,
    ];

    /// The events an endpoint gets when it names none: a job's end, whatever it was, and a
    /// watched icon's change (sent only for domains the client watches, so a client without
    /// watches never gets one).
    pub const DEFAULT: [Self; 4] = [
        Self::JobCompleted,
        Self::JobFailed,
        Self::JobCancelled,
        Self::IconChanged,
    ];

    /// The event's name, as sent in `type` and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JobCompleted => "job.completed",
            Self::JobFailed => "job.failed",
            Self::JobCancelled => "job.cancelled",
            Self::JobProgress => "job.progress",
            Self::IconChanged => "icon.changed",
            Self::WebhookTest => "webhook.test",
        }
    }

    /// The event named `word`, if it is one.
    pub fn parse(word: &str) -> Option<Self> {
        [
            Self::JobCompleted,
            Self::JobFailed,
            Self::JobCancelled,
            Self::JobProgress,
            Self::IconChanged,
            Self::WebhookTest,
        ]
        .into_iter()
        .find(|e| e.as_str() == word)
    }

    /// The event a job's final status sends (`None` while it runs).
    pub fn ending(status: JobStatus) -> Option<Self> {
        match status {
            JobStatus::Completed => Some(Self::JobCompleted),
            JobStatus::Failed => Some(Self::JobFailed),
            JobStatus::Cancelled => Some(Self::JobCancelled),
            _ => None,
        }
    }

    /// The subscribable events named in `stored` (comma-separated, as the store keeps them).
    pub fn parse_list(stored: &str) -> Vec<Self> {
        stored.split(',').filter_map(Self::parse).collect()
    }

    /// `events` as the store keeps them: comma-separated names.
    pub fn format_list(events: &[Self]) -> String {
        events
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Serialize for WebhookEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, async_graphql::Enum, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[graphql(name = "WebhookDeliveryStatus")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or in one now).
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt failed; nothing more is tried unless it is redelivered.
    Failed,
}

impl DeliveryStatus {
    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// The status stored as `word` (anything unknown reads as failed, which retries nothing).
    pub fn parse(word: &str) -> Self {
        match word {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            _ => Self::Failed,
        }
    }
}

/// The retry schedule: after the `n`th failed attempt (from 1) the next waits
/// `base × 3^(n-1)`, capped at `max`, with ±20 % jitter so endpoints that failed together do
/// not all come back at the same instant. With the defaults (5 s, 6 h, 12 attempts) the last
/// attempt is about 22 hours after the first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
}

impl Backoff {
    /// The wait after failed attempt `attempt` (from 1), or `None` when it was the last.
    /// `jitter` is a draw in `[0, 1)`.
    pub fn after(&self, attempt: u32, jitter: f64) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let growth = 3f64.powi(attempt.saturating_sub(1).min(40) as i32);
        let wait = (self.base.as_secs_f64() * growth).min(self.max.as_secs_f64());
        Some(Duration::from_secs_f64(
            wait * (0.8 + 0.4 * jitter.clamp(0.0, 1.0)),
        ))
    }

    /// The time from the first attempt to the last, without jitter.
    pub fn span(&self) -> Duration {
        (1..self.max_attempts)
            .filter_map(|n| self.after(n, 0.5))
            .sum()
    }
}

/// A webhook endpoint as every API shows it (never its secret).
// GraphQL flattens these fields into its `Webhook`, which adds the ids as `ID`s.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "WebhookFields")]
pub struct Webhook {
    /// Its id.
    #[graphql(skip)]
    pub id: Uuid,
    /// The client it belongs to.
    pub client_id: String,
    /// Where events are sent.
    pub url: String,
    /// The owner's note.
    pub description: Option<String>,
    /// The events it is sent.
    #[schema(value_type = Vec<String>, example = json!(["job.completed"]))]
    pub events: Vec<WebhookEvent>,
    /// False once it was disabled for failing; `disabled_reason` (`disabledReason` over
    /// GraphQL) says why.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// When it was disabled.
    pub disabled_at: Option<DateTime<Utc>>,
    /// When its current run of failures began (null while it answers).
    pub failing_since: Option<DateTime<Utc>>,
    /// Until when the secret it had before the last rotation still signs beside the new one.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// One attempt to deliver an event.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "WebhookAttempt")]
pub struct DeliveryAttempt {
    /// Its number, from 1.
    pub attempt: i32,
    /// When it started.
    pub at: DateTime<Utc>,
    /// The endpoint's HTTP status, when it answered.
    pub status_code: Option<i32>,
    /// From sending to the answer's end (or the failure), in milliseconds.
    pub latency_ms: i32,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// One event on its way to one endpoint.
// GraphQL flattens these fields into its `WebhookDelivery`, which adds the ids as `ID`s.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "WebhookDeliveryFields")]
pub struct WebhookDelivery {
    /// The delivery's id (what `redeliver` takes).
    #[graphql(skip)]
    pub id: Uuid,
    /// The endpoint.
    #[graphql(skip)]
    pub webhook_id: Uuid,
    /// The `webhook-id` header: the same on every attempt and redelivery of one event.
    pub event_id: String,
    /// The event's `type`.
    #[schema(value_type = String, example = "job.completed")]
    pub event_type: WebhookEvent,
    /// The job it is about, if any.
    #[graphql(skip)]
    pub job_id: Option<Uuid>,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
    /// When the endpoint answered 2xx.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The last attempt's HTTP status.
    pub last_status_code: Option<i32>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<DeliveryAttempt>,
}

/// The `webhook-id` of event `event_id`: `msg_` and the id's 32 hex digits, as Standard
/// Webhooks' examples spell message ids.
pub fn message_id(event_id: Uuid) -> String {
    format!("msg_{}", event_id.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_spans_about_a_day() {
        let b = Backoff {
            base: Duration::from_secs(5),
            max: Duration::from_secs(6 * 3600),
            max_attempts: 12,
        };
        let hours = b.span().as_secs_f64() / 3600.0;
        assert!((20.0..=26.0).contains(&hours), "{hours} h");
        assert_eq!(b.after(12, 0.5), None);
        assert_eq!(b.after(1, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(b.after(2, 0.0), Some(Duration::from_secs(12)));
        assert_eq!(
            b.after(11, 1.0),
            Some(Duration::from_secs_f64(6.0 * 3600.0 * 1.2))
        );
    }

    #[test]
    fn every_event_reads_back_from_its_name() {
        for e in WebhookEvent::SUBSCRIBABLE {
            assert_eq!(WebhookEvent::parse(e.as_str()), Some(e));
        }
        let stored = WebhookEvent::format_list(&WebhookEvent::DEFAULT);
        assert_eq!(WebhookEvent::parse_list(&stored), WebhookEvent::DEFAULT);
        assert_eq!(WebhookEvent::parse("job.done"), None);
    }
}
