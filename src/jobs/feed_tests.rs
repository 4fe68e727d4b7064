//! The shared feed with the core alone: a SQLite store, in-process events, paused time.

use super::*;
use crate::auth::Caller;
use crate::domain::Domain;
use crate::events::{COALESCE, Events};
use crate::jobs::{RateLimits, Rules};
use crate::metrics::Metrics;
use crate::store::{CachePolicy, Store};
use futures::StreamExt;

/// A core over a fresh SQLite store holding one running ten-domain job, with its id.
async fn core_with_job() -> (Jobs, Events, Arc<Metrics>, Uuid, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("f.db").display());
    let store = Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let domains: Vec<Domain> = (0..10)
        .map(|i| Domain::parse(&format!("d{i}.test")).unwrap())
        .collect();
    let job = store
        .create_job("feed", &domains, CachePolicy::OFF)
        .await
        .unwrap();
    let events = Events::in_process();
    let metrics = Arc::new(Metrics::new());
    let rules = Rules {
        max_domains_per_job: 100,
        rate_limits: RateLimits::default(),
        cache_max_age: Duration::ZERO,
        cache_failure_max_age: Duration::ZERO,
        export_chunk_bytes: 1 << 16,
        purge_batch_rows: 100,
    };
    let jobs = Jobs::new(store, events.clone(), rules).with_metrics(metrics.clone());
    (jobs, events, metrics, job.id, dir)
}

/// Event number `i` of a job: one more domain finished.
fn step(job: Uuid, i: i32, status: JobStatus) -> ProgressEvent {
    let domain = format!("d{i}.test");
    ProgressEvent::sample(job, status, i, 0, &[domain.as_str()])
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_not_buffered_for_and_still_gets_the_end() {
    let (mut jobs, events, metrics, job, _dir) = core_with_job().await;
    // A short buffer, so that falling behind it takes a second, not FEED_BUFFER windows.
    let buffer = 4;
    jobs.feeds = Feeds::with_buffer(buffer);
    let mut idle = Box::pin(jobs.progress(&Caller::Anonymous, job, None).await.unwrap());
    let snapshot = idle.next().await.unwrap();
    assert_eq!(snapshot.event().done(), 0);
    // Three buffers' worth of frames, each in its own coalescing window, while it reads nothing.
    let published = 3 * buffer as i32;
    for i in 1..=published {
        events.publish_progress(step(job, i, JobStatus::Processing));
        tokio::time::sleep(COALESCE + COALESCE / 2).await;
    }
    events.publish_progress(step(job, published + 1, JobStatus::Completed));
    tokio::time::sleep(COALESCE * 2).await;

    let mut frames = Vec::new();
    while let Some(frame) = tokio::time::timeout(IDLE_REREAD * 2, idle.next())
        .await
        .expect("the stream ends")
    {
        frames.push(frame);
    }
    // Only what the feed keeps, plus the catch-up from the database: the rest was never held.
    assert!(
        frames.len() <= buffer + 1,
        "{} frames delivered after {published} were published",
        frames.len()
    );
    // One catch-up of the subscriber, and one check by the feed that the final event's
    // count is all named (these made-up events count more domains than they name).
    assert_eq!(
        metrics.progress_rereads.get(),
        2,
        "it caught up from the database once"
    );
    let last = frames.last().unwrap().event();
    assert!(last.is_final(), "the final event arrives: {last:?}");
    assert_eq!(last.done(), published + 1);
    let mut done = 0;
    for frame in &frames {
        assert!(frame.event().done() >= done, "counts never go back");
        done = frame.event().done();
    }
    assert_eq!(jobs.progress_feeds(), 0, "the feed ended with the job");
}

#[tokio::test]
async fn one_feed_serves_every_subscriber_and_re_reads_once_per_silence() {
    let (jobs, events, metrics, job, _dir) = core_with_job().await;
    let mut streams = Vec::new();
    for _ in 0..50 {
        let mut stream = Box::pin(jobs.progress(&Caller::Anonymous, job, None).await.unwrap());
        stream.next().await.unwrap();
        streams.push(stream);
    }
    assert_eq!(jobs.progress_feeds(), 1);
    let readers: Vec<_> = streams
        .into_iter()
        .map(|stream| tokio::spawn(stream.collect::<Vec<_>>()))
        .collect();
    // One silence, then the end.
    tokio::time::sleep(IDLE_REREAD + Duration::from_secs(1)).await;
    assert_eq!(
        metrics.progress_rereads.get(),
        1,
        "one re-read per silence for 50 subscribers, not one per subscriber"
    );
    events.publish_progress(step(job, 10, JobStatus::Completed));
    let mut first: Option<Vec<Arc<ProgressFrame>>> = None;
    for reader in readers {
        let frames = reader.await.unwrap();
        assert!(frames.last().unwrap().event().is_final());
        match &first {
            // Every subscriber got the very same frames, not copies.
            Some(first) => assert!(
                first.iter().zip(&frames).all(|(a, b)| Arc::ptr_eq(a, b))
                    && first.len() == frames.len()
            ),
            None => first = Some(frames),
        }
    }
    assert_eq!(jobs.progress_feeds(), 0);
}

#[tokio::test]
async fn the_feed_stops_when_its_last_subscriber_leaves() {
    let (jobs, _events, _metrics, job, _dir) = core_with_job().await;
    let a = jobs.progress(&Caller::Anonymous, job, None).await.unwrap();
    let b = jobs.progress(&Caller::Anonymous, job, None).await.unwrap();
    assert_eq!(jobs.progress_feeds(), 1);
    drop(a);
    assert_eq!(jobs.progress_feeds(), 1);
    drop(b);
    assert_eq!(jobs.progress_feeds(), 0);
    // A later subscriber starts a new feed.
    let _c = jobs.progress(&Caller::Anonymous, job, None).await.unwrap();
    assert_eq!(jobs.progress_feeds(), 1);
}

#[tokio::test]
async fn a_frame_is_rendered_once_per_key() {
    let frame = ProgressFrame::new(step(Uuid::nil(), 1, JobStatus::Processing));
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
    let render = |s: &'static str| move || async move { Ok::<_, ()>(s.to_owned()) };
    let first = frame.rendered(&a, render("one")).await.unwrap();
    let again = frame.rendered(&a, render("two")).await.unwrap();
    let other = frame.rendered(&b, render("three")).await.unwrap();
    assert!(first.fresh && !again.fresh && other.fresh);
    assert_eq!(
        (&*first.text, &*again.text, &*other.text),
        ("one", "one", "three")
    );
    assert!(Arc::ptr_eq(&first.text, &again.text));
}
