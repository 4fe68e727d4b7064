use super::recorder::write_batch;
use super::*;

#[tokio::test]
async fn a_panic_or_an_overrun_is_a_failed_try() {
    let panicking = async {
        if true {
            panic!("boom at example.com");
        }
        Err(FindError::new(ErrorCategory::NoIcon, "unreachable"))
    };
    let err = guarded(panicking, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::Internal);
    assert!(
        err.message.contains("boom at example.com"),
        "{}",
        err.message
    );
    assert!(
        err.category.is_transient(),
        "a crash is retried up to the try limit"
    );

    let stuck = std::future::pending::<FindOutcome>();
    let err = guarded(stuck, Duration::from_millis(20)).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Timeout);
}

#[tokio::test]
async fn a_write_that_cannot_reach_the_database_is_a_transient_failure() {
    let store = Store::connect("sqlite::memory:", 1).await.unwrap();
    store.migrate().await.unwrap();
    store.connection().clone().close().await.unwrap();
    let metrics = Metrics::new();
    let claim = Claimed {
        id: Uuid::new_v4(),
        job_id: Uuid::new_v4(),
        domain: "a.test".into(),
        tries: 1,
        owner: Uuid::new_v4(),
    };
    let mut batch = vec![(
        claim,
        Disposition::Finish(Err(FindError::new(ErrorCategory::NoIcon, "none"))),
    )];
    // The recorder retries for as long as it runs; a second is a few tries.
    let events = Events::in_process();
    let write = write_batch(&store, &events, &metrics, &mut batch);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), write)
            .await
            .is_err()
    );
    let count = |kind| metrics.record_failures.with_label_values(&[kind]).get();
    assert!(count("transient") >= 1);
    assert_eq!(count("permanent"), 0);
    assert_eq!(batch.len(), 1, "nothing is dropped while it retries");
}

#[test]
fn a_recorder_with_nothing_waiting_is_never_stalled() {
    let health = RecorderHealth::new(Duration::ZERO);
    assert_eq!(health.stalled(), None);
    health.handed_over();
    std::thread::sleep(Duration::from_millis(5));
    let why = health.stalled().expect("waiting past a zero lease");
    assert!(why.contains("1 finished domains wait"), "{why}");
    health.wrote(1);
    assert_eq!(health.stalled(), None);
}

#[test]
fn backoff_grows_and_is_capped() {
    let base = Duration::from_millis(100);
    for _ in 0..50 {
        let first = backoff(1, base);
        assert!(first >= Duration::from_millis(50) && first < Duration::from_millis(150));
        let third = backoff(3, base);
        assert!(third >= Duration::from_millis(200) && third < Duration::from_millis(600));
        assert!(backoff(40, base) <= MAX_BACKOFF);
    }
}

#[test]
fn database_backoff_stays_short_after_a_long_outage() {
    // Attempts come every acquire timeout (10 s) plus this wait: a few minutes down means
    // a dozen failures, which must not turn into minutes of idling once it is back.
    for attempt in [1, 12, 20, 40] {
        assert!(db_backoff(attempt) <= MAX_DB_BACKOFF);
    }
    assert!(db_backoff(1) < Duration::from_millis(300));
}

#[tokio::test]
async fn drain_works_the_queue_to_empty_and_records_everything() {
    use crate::domain::Domain;
    use crate::entities::{job::JobStatus, result::ResultStatus};
    use crate::finder::tests::{Server, config, html, ok, status};
    use crate::store::CachePolicy;

    let site = Server::start(|r| match (r.host.as_str(), r.path.as_str()) {
        ("icon.test", "/") => html(r#"<head><link rel=icon href=/i.png></head>"#),
        ("icon.test", "/i.png") => ok("image/png", crate::finder::image::tests::png_bytes(32, 32)),
        _ => status(404),
    })
    .await;
    let store = Store::connect("sqlite::memory:", 1).await.unwrap();
    store.migrate().await.unwrap();
    let domains: Vec<Domain> = ["icon.test", "bare.test", "also-bare.test"]
        .iter()
        .map(|d| Domain::parse(d).unwrap())
        .collect();
    let job = store
        .create_job("drain", &domains, CachePolicy::OFF)
        .await
        .unwrap()
        .job;
    let settings = WorkerSettings {
        // Fewer slots than rows, so the drain has to claim again as slots free up.
        concurrency: 2,
        lease: Duration::from_secs(30),
        poll: Duration::from_secs(3600),
        max_tries: 3,
        backoff: Duration::from_secs(60),
        find_timeout: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(10),
    };
    let pool = WorkerPool::new(
        store.clone(),
        Arc::new(Finder::new(config(site.port, true, 5000)).unwrap()),
        Events::in_process(),
        Arc::new(Metrics::new()),
        settings,
    );

    assert_eq!(
        pool.drain().await.unwrap(),
        3,
        "every row finished by this drain"
    );

    // Nothing waits or is leased, and every outcome is written, with no wait in between.
    assert_eq!(store.queue_depth().await.unwrap(), (0, 0));
    let rows = store.results_page(job.id, 1, 10).await.unwrap();
    let statuses: Vec<_> = rows.iter().map(|r| (r.domain.as_str(), r.status)).collect();
    assert_eq!(
        statuses,
        [
            ("icon.test", ResultStatus::Success),
            ("bare.test", ResultStatus::Failed),
            ("also-bare.test", ResultStatus::Failed),
        ]
    );
    assert_eq!(
        rows[0].favicon_url.as_deref(),
        Some("http://icon.test/i.png")
    );
    let job = store.job(job.id).await.unwrap().unwrap().job;
    assert_eq!(
        (job.status, job.completed, job.failed),
        (JobStatus::Completed, 1, 2)
    );
    assert_eq!(
        pool.drain().await.unwrap(),
        0,
        "an empty queue drains at once"
    );
}

#[tokio::test]
async fn a_drain_whose_claim_fails_says_so() {
    let store = Store::connect("sqlite::memory:", 1).await.unwrap();
    store.migrate().await.unwrap();
    store.connection().clone().close().await.unwrap();
    let pool = WorkerPool::new(
        store,
        Arc::new(Finder::new(crate::finder::FinderConfig::default()).unwrap()),
        Events::in_process(),
        Arc::new(Metrics::new()),
        WorkerSettings {
            concurrency: 1,
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(3600),
            max_tries: 1,
            backoff: Duration::from_secs(1),
            find_timeout: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(1),
        },
    );
    assert!(pool.drain().await.is_err());
}
