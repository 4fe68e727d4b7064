// The icon grid: results paged in through the cursor connection as the user scrolls, drawn
// virtually (only the rows in view, plus a margin, exist in the DOM), so a 100,000-domain
// job costs the page a few hundred elements and one small record per loaded result.

import { resultsPage } from "./api.js";
import { h, iconUrl } from "./dom.js";

const TILE_W = 132;
const TILE_H = 112;
const OVERSCAN_ROWS = 3;
const PAGE = 200;

/** A grid over job `jobId` with `filters`; `onSelect(domain)` opens the drill-down. */
export function createGrid(jobId, { onSelect }) {
  const spacer = h("div", { class: "grid-spacer" });
  const viewport = h("div", { class: "grid", id: "grid", role: "list", "aria-label": "Icons" }, spacer);
  const more = h("p", { class: "hint", id: "grid-state", "aria-live": "polite" });
  let items = [];
  let index = new Map();
  let next = null;
  let loading = false;
  let done = false;
  let filters = {};
  let generation = 0;
  let columns = 1;
  // Results reported while a page is on its way: the page may have been read before they
  // finished, so they are applied to it when it arrives.
  let inflight = new Map();
  const tiles = new Map();

  function columnsNow() {
    return Math.max(1, Math.floor((viewport.clientWidth || TILE_W) / TILE_W));
  }

  function tile(i) {
    const item = items[i];
    const status = item.status.toLowerCase();
    const el = h(
      "button",
      { type: "button", role: "listitem", class: `tile ${status}`, "data-domain": item.domain, title: item.error || item.domain },
      item.status === "PENDING" ? h("span", { class: "placeholder", "aria-hidden": "true" }) : h("img", { src: iconUrl(item.domain), alt: "", width: 32, height: 32, loading: "lazy", decoding: "async" }),
      h("span", { class: "name" }, item.domain),
      h("span", { class: "why" }, item.status === "FAILED" ? item.errorCode || "failed" : item.status === "PENDING" ? "pending" : "ok"),
    );
    el.addEventListener("click", () => onSelect(item.domain));
    el.style.transform = `translate(${(i % columns) * TILE_W}px, ${Math.floor(i / columns) * TILE_H}px)`;
    return el;
  }

  function draw() {
    columns = columnsNow();
    const rows = Math.ceil(items.length / columns);
    spacer.style.height = `${rows * TILE_H}px`;
    const first = Math.max(0, Math.floor(viewport.scrollTop / TILE_H) - OVERSCAN_ROWS);
    const last = Math.min(rows, Math.ceil((viewport.scrollTop + viewport.clientHeight) / TILE_H) + OVERSCAN_ROWS);
    const from = first * columns;
    const to = Math.min(items.length, last * columns);
    for (const [i, el] of tiles) {
      if (i < from || i >= to || el.dataset.stale) {
        el.remove();
        tiles.delete(i);
      }
    }
    for (let i = from; i < to; i++) {
      if (!tiles.has(i)) {
        const el = tile(i);
        tiles.set(i, el);
        spacer.append(el);
      }
    }
    more.textContent = done ? `${items.length} shown` : `${items.length} loaded, more while you scroll`;
    // Near the end of what is loaded: fetch the next page.
    if (!done && !loading && to >= items.length - columns * OVERSCAN_ROWS) loadMore();
  }

  async function loadMore() {
    if (loading || done) return;
    loading = true;
    const mine = generation;
    try {
      const page = await resultsPage(jobId, { first: PAGE, after: next, ...filters });
      if (mine !== generation) return;
      for (const node of page.nodes) {
        index.set(node.domain, items.length);
        const r = inflight.get(node.domain) || node;
        items.push({ domain: node.domain, status: r.status, errorCode: r.errorCode, error: r.error });
      }
      next = page.next;
      done = !next;
    } catch (e) {
      more.textContent = e.message;
      done = true;
    } finally {
      if (mine === generation) {
        loading = false;
        inflight = new Map();
      }
    }
    if (mine === generation) draw();
  }

  let frame = 0;
  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(() => ((frame = 0), draw()));
  };
  viewport.addEventListener("scroll", schedule, { passive: true });
  const resize = new ResizeObserver(schedule);
  resize.observe(viewport);

  return {
    element: h("div", {}, viewport, more),
    /** Starts again with new filters ({status, errorCode, domain}). */
    reset(newFilters) {
      generation += 1;
      filters = newFilters;
      items = [];
      index = new Map();
      next = null;
      done = false;
      loading = false;
      inflight = new Map();
      for (const el of tiles.values()) el.remove();
      tiles.clear();
      viewport.scrollTop = 0;
      loadMore();
    },
    /** Takes in results a progress event reports finished. */
    update(results) {
      for (const r of results) {
        if (loading) inflight.set(r.domain, r);
        const i = index.get(r.domain);
        if (i === undefined) continue;
        items[i] = { domain: r.domain, status: r.status, errorCode: r.errorCode, error: r.error };
        const el = tiles.get(i);
        if (el) el.dataset.stale = "1";
      }
      schedule();
    },
    /** Stops observing. */
    destroy() {
      generation += 1;
      resize.disconnect();
    },
  };
}
