//! The CSV export's read: one statement per export through the driver's row stream, each row
//! written as CSV from cells borrowed from the driver's row, and handed to the response body a
//! chunk at a time.

use super::EXPORT_SQL;
use crate::model::{CsvRow, CsvWriter};
use crate::store::StoreError;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, TryStreamExt};
use sea_orm::sqlx::{self, Row};
use sea_orm::{DatabaseConnection, DbBackend, DbErr, RuntimeErr};
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

/// How long the export keeps its statement open waiting for a client to take a chunk. Past
/// it the statement is let go, so a slow or stalled client holds neither a pooled connection
/// nor (on SQLite) a read snapshot that keeps the WAL from being checkpointed.
pub const HOLD: Duration = Duration::from_secs(1);

type Chunk = Result<Bytes, StoreError>;

/// Starts the export of job `job_id`'s rows into `csv` (which may hold a header already) and
/// answers its chunks. The read runs as a task one chunk ahead of the body; it ends when the
/// body is dropped.
pub(super) fn spawn(
    db: DatabaseConnection,
    job_id: Uuid,
    csv: CsvWriter,
    chunk_bytes: usize,
) -> impl Stream<Item = Chunk> + Send + Unpin + use<> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut export = Export {
            csv,
            chunk_bytes,
            tx,
            after: -1,
        };
        if let Err(e) = export.run(&db, job_id).await {
            let _ = export.tx.send(Err(e)).await;
        }
    });
    let mut rx = rx;
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// One export under way.
struct Export {
    csv: CsvWriter,
    chunk_bytes: usize,
    tx: mpsc::Sender<Chunk>,
    /// The position of the last row written into `csv`: where a new statement resumes.
    after: i32,
}

/// How one statement's read ended.
enum Pass {
    /// Every row was read.
    Done,
    /// The client did not take this chunk within [`HOLD`]; the statement was let go.
    Paused(Bytes),
    /// The body was dropped (the client went away).
    Gone,
}

impl Export {
    async fn run(&mut self, db: &DatabaseConnection, job_id: Uuid) -> Result<(), StoreError> {
        loop {
            let pass = match db.get_database_backend() {
                DbBackend::Postgres => {
                    let pool = db.get_postgres_connection_pool();
                    let query = sqlx::query(EXPORT_SQL).bind(job_id).bind(self.after);
                    self.pump(query.fetch(pool)).await?
                }
                _ => {
                    let pool = db.get_sqlite_connection_pool();
                    let query = sqlx::query(EXPORT_SQL).bind(job_id).bind(self.after);
                    self.pump(query.fetch(pool)).await?
                }
            };
            match pass {
                Pass::Done => break,
                Pass::Gone => return Ok(()),
                // Waits without a statement, then reads on after the rows already written.
                Pass::Paused(chunk) => {
                    if self.tx.send(Ok(chunk)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        if !self.csv.is_empty() {
            let rest = self.csv.take(self.csv.len());
            let _ = self.tx.send(Ok(rest)).await;
        }
        Ok(())
    }

    /// Writes the rows of one statement, sending a chunk whenever the next row would take it
    /// past `chunk_bytes` (a single longer row is a chunk of its own).
    async fn pump<R: ExportRow>(
        &mut self,
        mut rows: BoxStream<'_, Result<R, sqlx::Error>>,
    ) -> Result<Pass, StoreError> {
        while let Some(row) = rows.try_next().await.map_err(query_error)? {
            let before = self.csv.len();
            self.after = row.write(&mut self.csv).map_err(query_error)?;
            if self.csv.len() <= self.chunk_bytes || before == 0 {
                continue;
            }
            let chunk = self.csv.take(before);
            match tokio::time::timeout(HOLD, self.tx.reserve()).await {
                Ok(Ok(permit)) => permit.send(Ok(chunk)),
                Ok(Err(_)) => return Ok(Pass::Gone),
                Err(_) => return Ok(Pass::Paused(chunk)),
            }
        }
        Ok(Pass::Done)
    }
}

fn query_error(e: sqlx::Error) -> StoreError {
    StoreError::from(DbErr::Query(RuntimeErr::SqlxError(e.into())))
}

/// A driver's row of [`EXPORT_SQL`].
trait ExportRow: Send {
    /// Writes the row into `csv` and answers its position.
    fn write(&self, csv: &mut CsvWriter) -> Result<i32, sqlx::Error>;
}

/// The same reads for each driver's row type: only the cell types' decoders differ.
macro_rules! export_row {
    ($row:ty) => {
        impl ExportRow for $row {
            fn write(&self, csv: &mut CsvWriter) -> Result<i32, sqlx::Error> {
                csv.row(&CsvRow {
                    domain: self.try_get(0)?,
                    status: self.try_get(1)?,
                    favicon_url: self.try_get(2)?,
                    error: self.try_get(3)?,
                    tries: self.try_get(4)?,
                    error_code: self.try_get(5)?,
                    final_url: self.try_get(6)?,
                    mime: self.try_get(7)?,
                    width: self.try_get(8)?,
                    height: self.try_get(9)?,
                    fetched_at: self.try_get(10)?,
                    cached: self.try_get(11)?,
                    has_icon: self.try_get(12)?,
                });
                self.try_get(13)
            }
        }
    };
}

export_row!(sqlx::postgres::PgRow);
export_row!(sqlx::sqlite::SqliteRow);
