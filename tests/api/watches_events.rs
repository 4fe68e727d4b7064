//! Watches end to end, on both databases, with the fake internet changing a site between
//! checks: a watch checked every second reports a changed icon once, on the `iconChanged`
//! subscription and through a verified webhook, with the right before and after, while its
//! checks stay out of the client's jobs and send no job events; a site that fails
//! transiently keeps its icon and reports nothing; a flapping site (A → B → A → B) is
//! reported once and the rest is history with `reported = false`; two worker processes
//! schedule each domain once per period, and a change one of them finds reaches a subscriber
//! on an API process that runs no workers.

use crate::common::webhooks::{Delivery, Receiver};
use crate::fake::{FakeInternet, Route, Sites, png};
use crate::helpers::{Protocol, TestApp, Ws, both_backends, ws_subscribe};
use crate::webhooks_delivery::{SECRET_KEY, register};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for what a few checks take.
const WAIT: Duration = Duration::from_secs(20);
/// The watched site.
const SITE: &str = "watched.test";

/// Settings that make a watch checked every second, and its events go out at once.
pub const FAST: [(&str, &str); 4] = [
    ("WATCH_MIN_EVERY_SECS", "1"),
    ("WATCH_TICK_MS", "100"),
    ("WEBHOOK_POLL_MS", "50"),
    SECRET_KEY,
];

/// The site's icon: a PNG `side` pixels square.
pub fn icon(side: u32) -> Route {
    Route::new(200, "image/png", png(side, side))
}

/// A fake internet where [`SITE`] declares `/i.png`, a 16×16 PNG.
pub async fn world() -> FakeInternet {
    let mut sites = Sites::default();
    sites.icon_site(SITE);
    FakeInternet::start(sites).await
}

/// Creates a watch of `domains` for `client` checked every `every` seconds over GraphQL;
/// returns its id.
pub async fn create_watch(app: &TestApp, client: &str, domains: &[&str], every: i64) -> String {
    let body = app
        .graphql(
            "mutation($input: CreateWatchInput!) { createWatch(input: $input) { id every domainCount clientId } }",
            json!({"input": {"domains": domains, "every": every, "clientId": client, "name": "mine"}}),
        )
        .await;
    let watch = &body["data"]["createWatch"];
    assert_eq!(watch["every"], json!(every), "{body}");
    assert_eq!(watch["domainCount"], json!(domains.len()), "{body}");
    assert_eq!(watch["clientId"], json!(client), "{body}");
    watch["id"].as_str().unwrap().to_owned()
}

/// The watch's first domain and its changes, newest first, over GraphQL. `changeCount` and
/// `changes` are read by two statements, so a check that records a change between them makes
/// them differ; the read is then made again (a few times at most: they must agree).
pub async fn watch_state(app: &TestApp, id: &str) -> (Value, Vec<Value>) {
    let mut tries = 0;
    loop {
        let (count, state) = read_watch(app, id).await;
        tries += 1;
        if count == state.1.len() || tries == 5 {
            assert_eq!(
                count,
                state.1.len(),
                "changeCount agrees with the changes listed"
            );
            return state;
        }
    }
}

/// One read of the watch: its `changeCount`, its first domain and its changes.
async fn read_watch(app: &TestApp, id: &str) -> (usize, (Value, Vec<Value>)) {
    let body = app
        .graphql(
            "query($id: ID!) { watch(id: $id) { changeCount
               domains { items { domain lastCheckedAt lastStatus lastError nextCheckAt
                 current { status url sha256 mime width height bytes errorCode at } } }
               changes { total items { id domain source reported detectedAt
                 before { status sha256 width height bytes url }
                 after { status sha256 width height bytes url } } } } }",
            json!({"id": id}),
        )
        .await;
    let watch = &body["data"]["watch"];
    assert!(watch.is_object(), "{body}");
    let changes = watch["changes"]["items"].as_array().unwrap().clone();
    let count = watch["changeCount"]
        .as_u64()
        .unwrap_or_else(|| panic!("{body}"));
    (
        count as usize,
        (watch["domains"]["items"][0].clone(), changes),
    )
}

/// Polls the watch until `done` holds for its first domain and its changes.
pub async fn wait_until(
    app: &TestApp,
    id: &str,
    what: &str,
    done: impl Fn(&Value, &[Value]) -> bool,
) -> (Value, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (domain, changes) = watch_state(app, id).await;
        if done(&domain, &changes) {
            return (domain, changes);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} not reached: {domain:#} {changes:#?}"
        );
        // Wall-clock: the checks run on the scheduler's tick in the app.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The watch's domain has been checked and found its 16×16 icon.
async fn baseline(app: &TestApp, id: &str) -> Value {
    let (domain, changes) = wait_until(app, id, "the first check", |d, _| {
        d["current"]["status"] == "found"
    })
    .await;
    assert_eq!(domain["domain"], SITE);
    assert_eq!(domain["lastStatus"], "found");
    assert_eq!(domain["current"]["width"], 16, "{domain}");
    assert_eq!(domain["current"]["mime"], "image/png", "{domain}");
    assert!(domain["current"]["sha256"].as_str().unwrap().len() == 64);
    assert!(
        changes.is_empty(),
        "a first look only sets the state: {changes:?}"
    );
    domain
}

/// The `iconChanged` subscription the tests open, with the watch's id as `$id`.
const ICON_CHANGED: &str = "subscription($id: ID!) { iconChanged(watchId: $id) { id domain source
  reported before { status sha256 width } after { status sha256 width } } }";

/// Opens `iconChanged(watchId)` on a fresh connection.
async fn subscribe(app: &TestApp, id: &str) -> Ws {
    let mut ws = app.ws().await;
    ws_subscribe(
        &mut ws,
        Protocol::TransportWs,
        "1",
        ICON_CHANGED,
        json!({"id": id}),
    )
    .await;
    ws
}

/// The next `iconChanged` payload within `within`, or `None`.
async fn next_change(ws: &mut Ws, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let message = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(message) => message.expect("the socket stays open").unwrap(),
        };
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        match frame["type"].as_str().unwrap() {
            "ka" | "ping" | "pong" => {}
            "next" => {
                assert!(frame["payload"]["errors"].is_null(), "{frame}");
                return Some(frame["payload"]["data"]["iconChanged"].clone());
            }
            other => panic!("unexpected frame {other}: {frame}"),
        }
    }
}

/// The `icon.changed` events the receiver got.
fn icon_events(receiver: &Receiver) -> Vec<Delivery> {
    receiver
        .deliveries()
        .into_iter()
        .filter(|d| d.body["type"] == "icon.changed")
        .collect()
}

async fn reported_once_on_both_paths(backend: crate::helpers::Backend) {
    let Some(receiver) = Receiver::start(&[], &[]).await else {
        return;
    };
    let internet = world().await;
    let app = TestApp::spawn_on(backend, &internet, &FAST).await;
    // The defaults include icon.changed.
    let (_, secret) = register(&app, "watcher", &receiver.url(), None).await;
    receiver.set_secrets(&[&secret]).await;
    let id = create_watch(&app, "watcher", &[SITE], 1).await;
    let mut ws = subscribe(&app, &id).await;
    let before = baseline(&app, &id).await;

    internet.set_route(SITE, "/i.png", icon(32));
    let change = next_change(&mut ws, WAIT)
        .await
        .expect("the change reaches the subscriber");
    assert_eq!(change["domain"], SITE);
    assert_eq!(change["source"], "watch");
    assert_eq!(change["reported"], true);
    assert_eq!(change["before"]["width"], 16, "{change}");
    assert_eq!(change["before"]["sha256"], before["current"]["sha256"]);
    assert_eq!(change["after"]["status"], "found");
    assert_eq!(change["after"]["width"], 32, "{change}");
    assert_ne!(change["after"]["sha256"], change["before"]["sha256"]);

    let sent = receiver.wait_for(1, WAIT).await;
    let event = sent
        .iter()
        .find(|d| d.body["type"] == "icon.changed")
        .expect("an icon.changed delivery");
    assert_eq!(event.verified_with, vec![0], "{:?}", event.verify_errors);
    let data = &event.body["data"];
    assert_eq!(data["watch_ids"], json!([id]), "{data}");
    assert_eq!(data["domain"], SITE);
    assert_eq!(data["change_id"], change["id"]);
    assert_eq!(data["source"], "watch");
    assert_eq!(data["before"]["width"], 16, "{data}");
    assert_eq!(data["before"]["mime"], "image/png", "{data}");
    assert_eq!(data["after"]["width"], 32, "{data}");
    assert_eq!(data["after"]["sha256"], change["after"]["sha256"]);
    assert!(data["after"]["bytes"].as_i64().unwrap() > 0, "{data}");

    // More checks of the unchanged new icon: nothing more is reported anywhere.
    // Wall-clock: about two more checks, one a second.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (domain, changes) = watch_state(&app, &id).await;
    assert_eq!(domain["current"]["width"], 32, "{domain}");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(next_change(&mut ws, Duration::from_millis(500)).await, None);
    assert_eq!(icon_events(&receiver).len(), 1);
    // The checks are the watch's: no job event went out, and the client's job list has none.
    assert!(
        receiver
            .deliveries()
            .iter()
            .all(|d| d.body["type"] == "icon.changed"),
        "{:#?}",
        receiver.deliveries()
    );
    let jobs = app
        .graphql(
            "{ jobs(clientId: \"watcher\") { total jobs { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(jobs["data"]["jobs"]["total"], 0, "{jobs}");
    app.stop().await;
}
both_backends!(a_changed_icon_is_reported_once, reported_once_on_both_paths);

/// Deleting a watch completes its `iconChanged` subscriptions: the stream stops polling for
/// a watch that is gone.
async fn a_deleted_watch_completes_its_subscription(backend: crate::helpers::Backend) {
    let internet = world().await;
    let app = TestApp::spawn_on(backend, &internet, &FAST).await;
    let id = create_watch(&app, "watcher", &[SITE], 3600).await;
    let following = tokio::spawn(crate::subscriptions::watch_query(
        app.ws().await,
        Protocol::TransportWs,
        ICON_CHANGED,
        json!({"id": id}),
    ));
    // Wall-clock: the subscription starts (its watch found) before the delete.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gone = app
        .graphql(
            "mutation($id: ID!) { deleteWatch(id: $id) }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(gone["data"]["deleteWatch"], true, "{gone}");
    let delivered = tokio::time::timeout(WAIT, following)
        .await
        .expect("the subscription completes after the delete")
        .unwrap();
    assert!(delivered.completed, "{delivered:?}");
    assert!(
        delivered.events.is_empty() && delivered.errors.is_empty(),
        "{delivered:?}"
    );
    app.stop().await;
}
both_backends!(
    deleted_watch_completes_subscription,
    a_deleted_watch_completes_its_subscription
);

async fn transient_failure_keeps_the_icon(backend: crate::helpers::Backend) {
    let Some(receiver) = Receiver::start(&[], &[]).await else {
        return;
    };
    let internet = world().await;
    let app = TestApp::spawn_on(backend, &internet, &FAST).await;
    let (_, secret) = register(&app, "watcher", &receiver.url(), None).await;
    receiver.set_secrets(&[&secret]).await;
    let id = create_watch(&app, "watcher", &[SITE], 1).await;
    let mut ws = subscribe(&app, &id).await;
    let before = baseline(&app, &id).await;

    // The site is unavailable for a while: a failure that may pass.
    internet.set_route(
        SITE,
        "/",
        Route::new(503, "text/html", "down for maintenance"),
    );
    let (domain, changes) = wait_until(&app, &id, "a transient check", |d, _| {
        d["lastStatus"] == "transient"
    })
    .await;
    assert_eq!(domain["lastError"], "rate_limited", "{domain}");
    assert_eq!(domain["current"], before["current"], "the icon is kept");
    assert!(changes.is_empty(), "{changes:?}");
    // And the icon is still served.
    let served = app
        .http
        .get(app.url(&format!("/icons/{SITE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/png");
    assert_eq!(next_change(&mut ws, Duration::from_millis(500)).await, None);
    assert!(
        icon_events(&receiver).is_empty(),
        "{:#?}",
        receiver.deliveries()
    );
    app.stop().await;
}
both_backends!(
    a_transient_failure_reports_nothing,
    transient_failure_keeps_the_icon
);

async fn flapping_is_reported_once(backend: crate::helpers::Backend) {
    let Some(receiver) = Receiver::start(&[], &[]).await else {
        return;
    };
    let internet = world().await;
    let app = TestApp::spawn_on(backend, &internet, &FAST).await;
    let (_, secret) = register(&app, "watcher", &receiver.url(), Some(&["icon.changed"])).await;
    receiver.set_secrets(&[&secret]).await;
    let id = create_watch(&app, "watcher", &[SITE], 1).await;
    let mut ws = subscribe(&app, &id).await;
    baseline(&app, &id).await;
    // A → B → A → B, each seen by a check before the next switch.
    for (n, side) in [32, 16, 32].into_iter().enumerate() {
        internet.set_route(SITE, "/i.png", icon(side));
        wait_until(&app, &id, "the next change", |_, changes| {
            changes.len() == n + 1
        })
        .await;
    }
    let (_, changes) = watch_state(&app, &id).await;
    let widths: Vec<_> = changes
        .iter()
        .map(|c| (c["before"]["width"].clone(), c["after"]["width"].clone()))
        .collect();
    assert_eq!(
        widths,
        vec![
            (json!(16), json!(32)),
            (json!(32), json!(16)),
            (json!(16), json!(32))
        ],
        "newest first"
    );
    let reported: Vec<_> = changes.iter().map(|c| c["reported"].clone()).collect();
    assert_eq!(reported, vec![json!(false), json!(false), json!(true)]);
    let first = next_change(&mut ws, WAIT).await.expect("the first change");
    assert_eq!(first["id"], changes[2]["id"]);
    assert_eq!(
        next_change(&mut ws, Duration::from_millis(1_000)).await,
        None
    );
    receiver.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = icon_events(&receiver);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].body["data"]["change_id"], changes[2]["id"]);
    app.stop().await;
}
both_backends!(a_flapping_site_is_reported_once, flapping_is_reported_once);

async fn fleet(backend: crate::helpers::Backend) {
    let internet = world().await;
    let resolve = internet.resolve(&[]);
    let mut vars = FAST.to_vec();
    vars.push(("FETCH_RESOLVE", &resolve));
    // The API process runs neither workers nor a scheduler: two worker processes do.
    let app = TestApp::spawn_api(backend, &vars).await;
    let _workers = [
        app.spawn_worker_process(&vars),
        app.spawn_worker_process(&vars),
    ];
    let others = ["two.watched.test", "three.watched.test"];
    let mut domains = vec![SITE];
    domains.extend(others);
    let id = create_watch(&app, "fleet", &domains, 1).await;
    let started = tokio::time::Instant::now();
    let mut ws = subscribe(&app, &id).await;
    baseline(&app, &id).await;

    internet.set_route(SITE, "/i.png", icon(48));
    let change = next_change(&mut ws, WAIT)
        .await
        .expect("a change found by a worker process reaches the API's subscriber");
    assert_eq!(
        (&change["before"]["width"], &change["after"]["width"]),
        (&json!(16), &json!(48)),
        "{change}"
    );
    assert_eq!(
        next_change(&mut ws, Duration::from_millis(1_500)).await,
        None
    );

    // Two schedulers, one check per domain per second: never a domain scheduled twice.
    let secs = started.elapsed().as_secs_f64();
    let per_domain = crate::helpers::number(
        app.store.connection(),
        "SELECT MAX(c) AS n FROM (SELECT COUNT(*) AS c FROM result r \
           JOIN job j ON j.id = r.job_id WHERE j.watch_id IS NOT NULL GROUP BY r.domain) AS t",
    )
    .await;
    assert!(
        (per_domain as f64) <= secs + 2.0,
        "{per_domain} checks of one domain in {secs:.1} s"
    );
    assert!(per_domain >= 2, "{per_domain} checks in {secs:.1} s");
    app.stop().await;
}
both_backends!(
    a_fleet_checks_each_domain_once_and_tells_any_subscriber,
    fleet
);
