//! The `dashboard` scenario: a `--big`-domain job's page in headless Chromium (the browser
//! tests' CDP client): the time from navigation to the first drawn icon tiles, and the most
//! JS heap (`Performance.getMetrics` `JSHeapUsedSize`) while the grid is scrolled through
//! many pages of results.

use super::*;
use cdp::Browser;

/// How far the grid is scrolled, in steps of a few screens.
const SCROLL_STEPS: usize = 60;

pub(super) async fn sc_dashboard(ctx: &mut Ctx) -> Result<()> {
    let big = ctx.opts.big;
    let Some(binary) = cdp::chromium() else {
        bail!("no Chromium (set CHROMIUM or install Debian's chromium)");
    };
    let net = plain_net(ctx, big, Duration::ZERO).await?;
    let d = ctx.deploy(Some(&net), embedded()).await?;
    let (_, job_id) = timed_job(ctx, &net, &d, big, Some(0)).await?;
    let browser = Browser::launch(&binary, &d.base).await;
    browser.call("Performance.enable", json!({})).await;
    browser.goto(&format!("{}/#/jobs/{job_id}", d.base)).await;
    // performance.now() counts from the navigation's start.
    let first_ms = browser
        .wait_for(
            "document.querySelectorAll('#grid .tile').length > 0 && performance.now()",
            Duration::from_secs(60),
            "the first icon tiles",
        )
        .await
        .as_f64()
        .unwrap_or(f64::NAN);
    let mut heap_max = 0.0f64;
    let mut tiles_max = 0u64;
    for _ in 0..SCROLL_STEPS {
        browser
            .eval("document.querySelector('#grid').scrollTop += 3000; new Promise(r => setTimeout(r, 150))")
            .await;
        let metrics = browser.call("Performance.getMetrics", json!({})).await;
        if let Some(heap) = metrics["metrics"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == "JSHeapUsedSize"))
            .and_then(|m| m["value"].as_f64())
        {
            heap_max = heap_max.max(heap);
        }
        let tiles = browser
            .eval("document.querySelectorAll('#grid .tile').length")
            .await;
        tiles_max = tiles_max.max(tiles.as_u64().unwrap_or(0));
    }
    let loaded = browser
        .eval("document.querySelector('#grid-state').textContent")
        .await;
    ctx.row(
        &format!("dashboard: first render of a {big}-domain job's page"),
        format!("{first_ms:.0} ms"),
        "< 1000 ms",
        Some(first_ms < 1000.0),
    );
    ctx.row(
        &format!("dashboard: most JS heap while scrolling a {big}-domain grid"),
        format!(
            "{:.1} MB ({tiles_max} tiles in the DOM at most; {})",
            heap_max / 1e6,
            loaded.as_str().unwrap_or_default()
        ),
        "< 100 MB",
        Some(heap_max < 100e6),
    );
    Ok(())
}
