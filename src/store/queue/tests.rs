//! The partial-index clauses the queue's queries splice in, checked against the migrated
//! schema on both databases; and the plans of the queries those indexes (and the job-position
//! index) serve, which must name their index.

use super::claim::claim_sql;
use super::*;
use crate::store::sql::{
    FAILED, FETCHED, HAS_DARK_ICON, HAS_ICON, LEASED, NUMBERED, PENDING, UNNUMBERED,
};
use sea_orm::{ConnectionTrait, DbBackend};
use std::collections::BTreeSet;

mod batch;

/// Each partial index on `result`, with the clause the queries repeat for it.
const PARTIAL_INDEXES: [(&str, &str); 8] = [
    ("idx_result_job_due", PENDING),
    ("idx_result_leased", LEASED),
    ("idx_result_fetched", FETCHED),
    ("idx_result_icon", HAS_ICON),
    ("idx_result_job_failure", FAILED),
    ("idx_result_finished_seq", NUMBERED),
    ("idx_result_unnumbered", UNNUMBERED),
    ("idx_result_dark_icon", HAS_DARK_ICON),
];

/// The partial indexes on `result` and their clauses, as the database holds them: the text
/// as written on SQLite, PostgreSQL's own rendering of the parsed clause on PostgreSQL.
async fn partial_indexes(db: &impl ConnectionTrait) -> BTreeMap<String, String> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => {
            "SELECT c.relname AS name, pg_get_expr(i.indpred, i.indrelid) AS clause \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = 'result'::regclass AND i.indpred IS NOT NULL"
        }
        _ => {
            "SELECT name, substr(sql, instr(sql, ' WHERE ') + 7) AS clause \
             FROM sqlite_master \
             WHERE type = 'index' AND tbl_name = 'result' AND sql LIKE '% WHERE %'"
        }
    };
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            (
                row.try_get::<String>("", "name").unwrap(),
                row.try_get::<String>("", "clause").unwrap(),
            )
        })
        .collect()
}

/// Every partial index the migrations leave has a constant, and each constant is the
/// index's clause: the database renders a probe index made from the constant exactly as
/// it renders the migrated index (on PostgreSQL after parsing both, so only a difference
/// in meaning or form fails, never one of spacing).
async fn check_partial_indexes(store: &Store) {
    let db = store.connection();
    let live = partial_indexes(db).await;
    assert_eq!(
        live.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        PARTIAL_INDEXES.iter().map(|(name, _)| *name).collect(),
        "every partial index on result needs its clause as a constant in store/queue.rs"
    );
    for (name, clause) in PARTIAL_INDEXES {
        let txn = db.begin().await.unwrap();
        txn.execute_unprepared(&format!(
            "CREATE INDEX ff_probe ON result (id) WHERE {clause}"
        ))
        .await
        .unwrap();
        let probe = partial_indexes(&txn).await.remove("ff_probe").unwrap();
        txn.rollback().await.unwrap();
        assert_eq!(live[name], probe, "{name} no longer matches its constant");
    }
}

/// The bound on the jobs a claim considers takes every client's oldest job first: a client
/// with more running jobs than the bound cannot keep another client's only job out.
#[tokio::test]
async fn every_client_has_a_job_among_the_active_ones_past_the_bound() {
    let store = Store::connect("sqlite::memory:", 1).await.unwrap();
    store.migrate().await.unwrap();
    let one = [crate::domain::Domain::parse("a.test").unwrap()];
    for _ in 0..=claim::MAX_ACTIVE_JOBS {
        store
            .create_job("alpha", &one, crate::store::CachePolicy::OFF)
            .await
            .unwrap();
    }
    let beta = store
        .create_job("beta", &one, crate::store::CachePolicy::OFF)
        .await
        .unwrap();
    let active = store.active_jobs(3).await.unwrap();
    assert_eq!(active.len() as u64, claim::MAX_ACTIVE_JOBS);
    assert!(
        active.iter().any(|job| job.id == beta.id),
        "beta's only job, the newest of {} processing jobs, must be considered",
        claim::MAX_ACTIVE_JOBS + 2
    );
}

/// A claim planned over as many jobs as a claim ever considers is one statement SQLite takes
/// (its compound selects are capped at 500 terms by default).
#[tokio::test]
async fn a_claim_over_every_active_job_is_one_statement_on_sqlite() {
    let store = Store::connect("sqlite::memory:", 1).await.unwrap();
    store.migrate().await.unwrap();
    let jobs: Vec<crate::model::fair::ActiveJob> = (0..claim::MAX_ACTIVE_JOBS)
        .map(|i| crate::model::fair::ActiveJob {
            id: Uuid::from_u128(u128::from(i) + 1),
            client: Uuid::from_u128(u128::from(i) + 1),
            priority: crate::model::Priority::Normal,
            due: true,
        })
        .collect();
    let share = crate::model::fair::Share {
        free: jobs.len(),
        per_job: 1,
        held: Default::default(),
    };
    let claimed = store
        .claim_share(Uuid::new_v4(), &share, &jobs, Duration::from_secs(30), 3)
        .await
        .unwrap();
    assert!(claimed.is_empty());
}

#[tokio::test]
async fn partial_index_clauses_match_the_migrations_on_sqlite() {
    let store = Store::connect("sqlite::memory:", 1).await.unwrap();
    store.migrate().await.unwrap();
    check_partial_indexes(&store).await;
    check_claim_plan(&store).await;
    check_standing_plans(&store).await;
}

/// The plans of the claim, the results page, the CSV export and the cache lookup of job
/// creation, on a queue of 30,000 rows
/// mostly finished (statistics taken), read their index, not a scan or sort of the table:
/// each index's name must be in its plan. (At 3,000 rows PostgreSQL rightly prefers a scan
/// of so small a table.)
async fn check_claim_plan(store: &Store) {
    let domains: Vec<crate::domain::Domain> = (0..30_000)
        .map(|i| crate::domain::Domain::parse(&format!("d{i}.test")).unwrap())
        .collect();
    let job = store
        .create_job("plans", &domains, crate::store::CachePolicy::OFF)
        .await
        .unwrap();
    let db = store.connection();
    // Most rows finished, as in a service that has run for a while.
    db.execute_unprepared(
        "UPDATE result SET status = 'success', fetched_at = updated_at WHERE position > 100",
    )
    .await
    .unwrap();
    super::super::write::number_finished(db, job.id, false)
        .await
        .unwrap();
    let backend = db.get_database_backend();
    let explain = match backend {
        DbBackend::Postgres => "EXPLAIN (FORMAT JSON)",
        _ => "EXPLAIN QUERY PLAN",
    };
    add_finished_jobs(db, job.id, 5_000).await;
    db.execute_unprepared("ANALYZE").await.unwrap();
    let now = now();
    check_fair_claim_plans(store, explain, job.id, true).await;
    // The results page and the CSV export read a range of one job's positions.
    let by_position = super::super::results::JOB_POSITION_INDEX;
    let page = sea_orm::QueryTrait::build(
        &super::super::results::page_query(job.id, &Default::default(), 20_000, 20),
        backend,
    );
    assert_plan_uses(db, explain, page, by_position).await;
    // The export resuming near the job's end (a third of it is read more cheaply in a
    // scan and a sort on PostgreSQL, as a whole job that is most of the table is).
    let export = Statement::from_sql_and_values(
        backend,
        super::super::results::EXPORT_SQL,
        [job.id.into(), 29_500i32.into()],
    );
    assert_plan_uses(db, explain, export, by_position).await;
    // Job creation's cache lookup probes the cache index per domain.
    let day = Duration::from_secs(86_400);
    let policy = crate::store::CachePolicy {
        max_age: day,
        failure_max_age: day,
    };
    let reuse = policy.cutoffs(now);
    let create =
        super::super::jobs::insert_results(backend, Uuid::new_v4(), now, reuse, 0, &domains[..50]);
    let (cache_index, _) = PARTIAL_INDEXES[2];
    assert_plan_uses(db, explain, create, cache_index).await;
    // A subscriber's catch-up reads a job's finished domains after a cursor, and a finishing
    // transaction numbers what it finished, each from its own index.
    let after = sea_orm::QueryTrait::build(
        &super::super::results::finished_after_query(job.id, 20_000, 1_000),
        backend,
    );
    let (numbered, _) = PARTIAL_INDEXES[5];
    assert_plan_uses(db, explain, after, numbered).await;
    let number = Statement::from_sql_and_values(
        backend,
        super::super::sql::number_sql(true),
        [job.id.into()],
    );
    let (unnumbered, _) = PARTIAL_INDEXES[6];
    assert_plan_uses(db, explain, number, unnumbered).await;
}

/// Adds `n` finished jobs of `like`'s client, as in a service that has run for a while: the
/// reads of processing jobs must then go by their partial index, not a scan of the table.
async fn add_finished_jobs(db: &sea_orm::DatabaseConnection, like: Uuid, n: i64) {
    let backend = db.get_database_backend();
    let (series, id) = match backend {
        DbBackend::Postgres => ("generate_series(1, $2) AS g(i)", "md5(g.i::text)::uuid"),
        _ => (
            "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $2) \
              SELECT i FROM s) AS g",
            "printf('00000000-0000-4000-8000-%012d', g.i)",
        ),
    };
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        format!(
            "INSERT INTO job (id, client_id, status, total, completed, failed, created_at, \
               updated_at, priority) \
             SELECT {id}, j.client_id, 'completed', 1, 1, 0, j.created_at, j.updated_at, \
               'normal' FROM {series}, job j WHERE j.id = $1"
        ),
        [like.into(), n.into()],
    ))
    .await
    .unwrap();
}

/// The fair claim's statements read each planned job's due rows from the claim index, with
/// no scan of `result` and no sort of the pending rows; the jobs they plan for are read from
/// `idx_job_processing`.
async fn check_fair_claim_plans(store: &Store, explain: &str, big: Uuid, analyze: bool) {
    let db = store.connection();
    let backend = db.get_database_backend();
    let small: Vec<crate::domain::Domain> = (0..20)
        .map(|i| crate::domain::Domain::parse(&format!("s{i}.test")).unwrap())
        .collect();
    let other = store
        .create_job("plans-other", &small, crate::store::CachePolicy::OFF)
        .await
        .unwrap();
    if analyze {
        db.execute_unprepared("ANALYZE").await.unwrap();
    }
    let now = now();
    let planned = [(big, 40usize), (other.id, 24)];
    let mut values: Vec<sea_orm::Value> =
        vec![Uuid::new_v4().into(), now.into(), now.into(), 3i32.into()];
    match backend {
        DbBackend::Postgres => {
            let ids: Vec<Uuid> = planned.iter().map(|(j, _)| *j).collect();
            let counts: Vec<i32> = planned.iter().map(|(_, n)| *n as i32).collect();
            values.push(ids.into());
            values.push(counts.into());
        }
        _ => {
            for (job, n) in planned {
                values.push(job.into());
                values.push((n as i64).into());
            }
        }
    }
    let claim = Statement::from_sql_and_values(backend, claim_sql(backend, planned.len()), values);
    let (index, _) = PARTIAL_INDEXES[0];
    let plan = assert_plan_uses(db, explain, claim, index).await;
    // A scan of result, or a sort: the index gives each job's rows in order.
    let steps = match backend {
        DbBackend::Postgres => pg_steps(&serde_json::from_str(&plan).unwrap()),
        _ => plan.lines().map(str::to_owned).collect(),
    };
    let bad = |step: &String| {
        step.starts_with("Seq Scan result")
            || step.starts_with("Sort")
            || step.starts_with("Incremental Sort")
            || step.starts_with("SCAN result")
            || step.contains("TEMP B-TREE")
    };
    assert!(
        steps.iter().any(|step| step.contains("result")),
        "no step of the plan reads result:\n{plan}"
    );
    assert!(
        !steps.iter().any(bad),
        "the claim scans or sorts:\n{}",
        steps.join("\n")
    );
    // The other readers of pending rows keep an index without idx_result_pending_order: the
    // queue depth and the reaper of exhausted rows read the claim index, a cancelled job's
    // leftovers (found, then finished) name their job, so either index that leads with it.
    let by_job = [index, "idx_result_job_status"];
    let depth = sea_orm::QueryTrait::build(&pending_rows(), backend);
    assert_plan_uses(db, explain, depth, index).await;
    let exhausted = sea_orm::QueryTrait::build(&exhausted_rows(3, now), backend);
    assert_plan_uses(db, explain, exhausted, index).await;
    let leftovers = Statement::from_sql_and_values(
        backend,
        super::super::sql::cancelled_with_leftovers_sql(),
        [now.into()],
    );
    assert_plan_uses_one_of(db, explain, leftovers, &by_job).await;
    let cancel = Statement::from_sql_and_values(
        backend,
        super::super::sql::cancel_rows_sql(),
        [big.into(), now.into(), "cancelled".into()],
    );
    assert_plan_uses_one_of(db, explain, cancel, &by_job).await;
    let jobs = Statement::from_sql_and_values(
        backend,
        super::super::sql::active_jobs_sql(),
        [
            now.into(),
            3i32.into(),
            (claim::MAX_ACTIVE_JOBS as i64).into(),
        ],
    );
    // Whether a job has a row due is one probe of an index led by the job.
    let plan = assert_plan_uses_one_of(db, explain, jobs, &by_job).await;
    if backend == DbBackend::Sqlite {
        // PostgreSQL rightly scans a job table this small; SQLite goes by the clause.
        assert!(plan.contains("idx_job_processing"), "{plan}");
    }
}

/// Every node of a PostgreSQL JSON plan as "node type relation".
fn pg_steps(plan: &serde_json::Value) -> Vec<String> {
    let mut steps = Vec::new();
    match plan {
        serde_json::Value::Array(items) => items.iter().for_each(|i| steps.extend(pg_steps(i))),
        serde_json::Value::Object(fields) => {
            if let Some(kind) = fields.get("Node Type").and_then(|k| k.as_str()) {
                let relation = fields
                    .get("Relation Name")
                    .and_then(|r| r.as_str())
                    .unwrap_or("");
                steps.push(format!("{kind} {relation}"));
            }
            fields.values().for_each(|v| steps.extend(pg_steps(v)));
        }
        _ => {}
    }
    steps
}

/// Asserts that `statement`'s plan names `index`; returns the plan.
async fn assert_plan_uses(
    db: &impl ConnectionTrait,
    explain: &str,
    statement: Statement,
    index: &str,
) -> String {
    assert_plan_uses_one_of(db, explain, statement, &[index]).await
}

/// Asserts that `statement`'s plan names one of `indexes`; returns the plan.
async fn assert_plan_uses_one_of(
    db: &impl ConnectionTrait,
    explain: &str,
    statement: Statement,
    indexes: &[&str],
) -> String {
    let backend = db.get_database_backend();
    let sql = format!("{explain} {}", statement.sql);
    let rows = db
        .query_all_raw(Statement { sql, ..statement })
        .await
        .unwrap();
    let plan: String = rows
        .iter()
        .map(|row| match backend {
            DbBackend::Postgres => row
                .try_get::<serde_json::Value>("", "QUERY PLAN")
                .unwrap()
                .to_string(),
            _ => row.try_get::<String>("", "detail").unwrap(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        indexes.iter().any(|index| plan.contains(index)),
        "the plan uses none of {indexes:?}:\n{plan}"
    );
    plan
}

#[tokio::test]
async fn partial_index_clauses_match_the_migrations_on_postgres() {
    let Some(admin_url) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        // The same rule as the integration tests' `services::available`.
        assert!(
            std::env::var("REQUIRE_SERVICES").as_deref() != Ok("1"),
            "REQUIRE_SERVICES=1 but TEST_DATABASE_URL is missing"
        );
        eprintln!("skipped: TEST_DATABASE_URL is missing");
        return;
    };
    let admin = Store::connect(&admin_url, 1).await.unwrap();
    let name = format!("ff_test_{}", Uuid::new_v4().simple());
    admin
        .connection()
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    let store = Store::connect(url.as_str(), 1).await.unwrap();
    store.migrate().await.unwrap();
    check_partial_indexes(&store).await;
    check_claim_plan(&store).await;
    check_standing_plans(&store).await;
    batch::check_claim_skips_the_flush(&store).await;
    store.connection().clone().close().await.unwrap();
    admin
        .connection()
        .execute_unprepared(&format!("DROP DATABASE {name}"))
        .await
        .unwrap();
}

/// A queue for the standing reads (`store/standing.rs`): a processing job of 20,000 pending
/// domains, 8 of them held by a worker, beside 20,000 finished jobs, as a service that has
/// run a while keeps; returns the processing job.
async fn standing_queue(store: &Store) -> Uuid {
    let domains: Vec<crate::domain::Domain> = (0..20_000)
        .map(|i| crate::domain::Domain::parse(&format!("s{i}.test")).unwrap())
        .collect();
    let job = store
        .create_job("standing", &domains, crate::store::CachePolicy::OFF)
        .await
        .unwrap();
    let db = store.connection();
    let backend = db.get_database_backend();
    let uuid = match backend {
        DbBackend::Postgres => "gen_random_uuid()",
        _ => "randomblob(16)",
    };
    let finished = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
         INSERT INTO job (id, client_id, status, total, completed, failed, created_at, \
           updated_at, priority) \
         SELECT {uuid}, j.client_id, 'completed', 1, 1, 0, j.created_at, j.updated_at, \
           'normal' FROM n, job j WHERE j.id = $1"
    );
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        finished,
        [job.id.into()],
    ))
    .await
    .unwrap();
    let lease = "UPDATE result SET lease_owner = $2, lease_until = $3 WHERE id IN \
                 (SELECT id FROM result WHERE job_id = $1 ORDER BY position LIMIT 8)";
    let until = now() + chrono::Duration::minutes(5);
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        lease,
        [job.id.into(), Uuid::new_v4().into(), until.into()],
    ))
    .await
    .unwrap();
    job.id
}

/// The standing of `job` reads the processing jobs through `idx_job_processing` and the
/// job's leases through `idx_result_leased` (not the job's 20,000 pending rows); the work
/// left per job reads `idx_job_processing` (not every client's jobs).
async fn assert_standing_plans(store: &Store, job: Uuid) {
    let db = store.connection();
    let backend = db.get_database_backend();
    let explain = match backend {
        DbBackend::Postgres => "EXPLAIN (FORMAT JSON)",
        _ => "EXPLAIN QUERY PLAN",
    };
    let standing = || super::super::standing::standing_statement(backend, job, now());
    assert_plan_uses(db, explain, standing(), "idx_job_processing").await;
    assert_plan_uses(db, explain, standing(), "idx_result_leased").await;
    let left = Statement::from_string(backend, super::super::standing::left_by_job_sql());
    assert_plan_uses(db, explain, left, "idx_job_processing").await;
}

/// The standing reads use their indexes on a database with statistics, and on PostgreSQL
/// before them too.
async fn check_standing_plans(store: &Store) {
    // Statistics taken before the job came: on PostgreSQL the read of the leases must not
    // depend on them.
    store
        .connection()
        .execute_unprepared("ANALYZE")
        .await
        .unwrap();
    let job = standing_queue(store).await;
    if store.connection().get_database_backend() == DbBackend::Postgres {
        assert_standing_plans(store, job).await;
    }
    store
        .connection()
        .execute_unprepared("ANALYZE")
        .await
        .unwrap();
    assert_standing_plans(store, job).await;
}

/// The service never runs `ANALYZE` on SQLite: without statistics too, the fair claim reads
/// each planned job's due rows from the claim index, and the active jobs from theirs.
#[tokio::test]
async fn claim_plans_use_their_indexes_on_sqlite_without_statistics() {
    let store = Store::connect("sqlite::memory:", 1).await.unwrap();
    store.migrate().await.unwrap();
    let domains: Vec<crate::domain::Domain> = (0..3_000)
        .map(|i| crate::domain::Domain::parse(&format!("d{i}.test")).unwrap())
        .collect();
    let job = store
        .create_job("plans", &domains, crate::store::CachePolicy::OFF)
        .await
        .unwrap();
    add_finished_jobs(store.connection(), job.id, 2_000).await;
    check_fair_claim_plans(&store, "EXPLAIN QUERY PLAN", job.id, false).await;
}

/// The service never runs `ANALYZE` on SQLite: without statistics too, the standing reads
/// use their indexes (before the `+job_id`, the leases were found by walking the job's
/// pending rows in `idx_result_job_status`).
#[tokio::test]
async fn standing_plans_use_their_indexes_on_sqlite_without_statistics() {
    let store = Store::connect("sqlite::memory:", 1).await.unwrap();
    store.migrate().await.unwrap();
    let job = standing_queue(&store).await;
    assert_standing_plans(&store, job).await;
}
