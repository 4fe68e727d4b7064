// Watches over GraphQL: the caller's watches (name, domains, period, changes), a form to
// create one, delete after a confirm; and one watch's view: its domains page by page (last
// check, next check, the current icon) and its changes page by page with before → after
// thumbnails, new ones arriving live through the iconChanged subscription. Domains, names,
// URLs and errors are written by users or by remote sites, so they only ever reach the page
// as text or attribute values (h() appends text nodes; nothing here parses HTML).

import { call, clientArg, live, ApiError } from "./api.js";
import { announce, duration, h } from "./dom.js";
import { parseList } from "./submit.js";

// When WebSockets are refused, the first page of changes is read again this often.
const POLL_MS = 5_000;
const UNITS = [
  ["3600", "hours"],
  ["60", "minutes"],
  // Only a server with a short WATCH_MIN_EVERY_SECS (a test) takes seconds.
  ["1", "seconds"],
];

// The operations are written out whole (no interpolation): tests read them from this file
// and run them against the deployed limits. A page of domains or changes is 20 long.
const LIST = `query { watches { id name every domainCount clientId changeCount lastChangeAt createdAt
  domains(page: 1, perPage: 3) { items { domain } } } }`;
const CREATE = `mutation($input: CreateWatchInput!) { createWatch(input: $input) { id } }`;
const DELETE = `mutation($id: ID!) { deleteWatch(id: $id) }`;
const WATCH = `query($id: ID!) { watch(id: $id) { id name every domainCount changeCount lastChangeAt createdAt } }`;
const DOMAINS = `query($id: ID!, $page: Int!) { watch(id: $id) {
  domains(page: $page, perPage: 20) { total page perPage items {
    domain lastCheckedAt lastStatus lastError nextCheckAt
    current { status url sha256 mime width height bytes errorCode at } } } } }`;
const CHANGES = `query($id: ID!, $page: Int!) { watch(id: $id) {
  changeCount lastChangeAt changes(page: $page, perPage: 20) { total page perPage items {
    id domain detectedAt source reported
    before { status url sha256 mime width height bytes errorCode at }
    after { status url sha256 mime width height bytes errorCode at } } } } }`;
const FOLLOW = `subscription($watchId: ID!) { iconChanged(watchId: $watchId) {
  id domain detectedAt source reported
  before { status url sha256 mime width height bytes errorCode at }
  after { status url sha256 mime width height bytes errorCode at } } }`;

const when = (t) => (t ? new Date(t).toLocaleString() : "—");

/** A period in seconds in words: "1 h 0 min", "5 min 0 s", "2 s". */
const period = (seconds) => duration(seconds);

/** The URL of one stored version of a domain's icon, as a 32-pixel PNG-or-native thumbnail. */
export const versionUrl = (domain, sha) =>
  `/icons/${encodeURIComponent(domain)}?sha=${encodeURIComponent(sha)}&size=32`;

/**
 * A snapshot's thumbnail: the exact stored version it names, or a placeholder saying why
 * there is none (gone, not kept by a server without an icon store, not checked yet).
 */
function thumb(domain, snap, side) {
  const label = side ? `${side}: ` : "";
  if (!snap) return h("span", { class: "thumb none", role: "img", "aria-label": `${label}not checked yet` }, "—");
  if (snap.status === "gone") {
    return h("span", { class: "thumb gone", role: "img", "aria-label": `${label}gone${snap.errorCode ? ` (${snap.errorCode})` : ""}` }, "gone");
  }
  if (!snap.sha256) return h("span", { class: "thumb none", role: "img", "aria-label": `${label}no stored copy` }, "?");
  return h("img", {
    class: "thumb", src: versionUrl(domain, snap.sha256), width: 32, height: 32, loading: "lazy", decoding: "async",
    alt: `${label}${snap.mime || "icon"}${snap.width ? ` ${snap.width}×${snap.height}` : ""}`,
    "data-sha": snap.sha256,
  });
}

// An icon inlined in the page is a data: URL of kilobytes: shown cut, whole in its title.
const URL_CHARS = 100;
const shortUrl = (url) => (url.length > URL_CHARS ? `${url.slice(0, URL_CHARS - 1)}…` : url);

/** What a snapshot says, in a few lines: status, URL, size, type. */
function snapshotText(snap) {
  if (!snap) return [];
  const size = [snap.width ? `${snap.width}×${snap.height}` : null, Number.isInteger(snap.bytes) ? `${snap.bytes.toLocaleString("en-US")} B` : null]
    .filter(Boolean).join(", ");
  return [
    h("span", { class: `status ${snap.status}` }, snap.status === "gone" ? `gone${snap.errorCode ? ` (${snap.errorCode})` : ""}` : "found"),
    snap.url ? h("code", { class: "url", title: snap.url }, shortUrl(snap.url)) : null,
    size ? h("span", { class: "size" }, size) : null,
    snap.mime ? h("span", { class: "mime" }, snap.mime) : null,
  ];
}

/** One side of a change: the thumbnail and what it shows. */
const side = (domain, snap, name) =>
  h("div", { class: `snapshot ${name.toLowerCase()}` }, thumb(domain, snap, name), h("div", { class: "what" }, snapshotText(snap)));

/** One change as a table row. */
function changeRow(c) {
  return h("tr", { "data-change": c.id, "data-domain": c.domain, class: c.reported ? null : "held" },
    h("td", { class: "domain" }, c.domain),
    h("td", {}, side(c.domain, c.before, "Before")),
    h("td", { class: "arrow", "aria-hidden": "true" }, "→"),
    h("td", {}, side(c.domain, c.after, "After")),
    h("td", {}, h("time", { datetime: c.detectedAt }, when(c.detectedAt)),
      h("span", { class: "hint" }, ` by ${c.source}`),
      c.reported ? null : h("span", { class: "hint" }, " (flapping: not sent)")));
}

/** One watched domain as a table row. */
function domainRow(d) {
  const status = d.lastStatus
    ? h("span", { class: `status ${d.lastStatus}` }, d.lastStatus)
    : h("span", { class: "hint" }, "not checked yet");
  return h("tr", { "data-domain": d.domain },
    h("td", {}, thumb(d.domain, d.current, null)),
    h("td", { class: "domain" }, d.domain),
    h("td", {}, h("time", { datetime: d.lastCheckedAt || "" }, when(d.lastCheckedAt)), " ", status),
    h("td", { class: "answer" }, d.lastError || "—"),
    h("td", {}, h("time", { datetime: d.nextCheckAt }, when(d.nextCheckAt))));
}

/** A table with a caption and column headers, and its body. */
function table(id, caption, columns) {
  const body = h("tbody");
  const el = h("table", { id },
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    body);
  return { element: h("div", { class: "table-wrap" }, el), body };
}

/** Previous / Next buttons and "Page n of m" under a paged table; `go(page)` reads a page. */
function pager(id, label, go) {
  const nav = h("nav", { class: "pager", id, "aria-label": label });
  return {
    element: nav,
    draw(page, perPage, total) {
      const pages = Math.max(1, Math.ceil(total / perPage));
      nav.replaceChildren(...[
        page > 1 ? h("button", { type: "button", class: "previous", onclick: () => go(page - 1) }, "Previous") : null,
        h("span", {}, ` Page ${page} of ${pages} `),
        page < pages ? h("button", { type: "button", class: "next", onclick: () => go(page + 1) }, "Next") : null,
      ].filter(Boolean));
    },
  };
}

/**
 * The confirm dialog of Delete: `ask(watch)` opens it; confirming deletes the watch and
 * calls `onDeleted(watch)`; a refusal goes to `onError(error)`.
 */
function deleteDialog({ onDeleted, onError }) {
  const text = h("p", { id: "watch-delete-text" });
  const keep = h("button", { type: "button", id: "watch-delete-cancel" }, "Keep it");
  const confirm = h("button", { type: "button", class: "danger", id: "watch-delete-confirm" }, "Delete");
  const dialog = h("dialog", { id: "watch-delete-dialog", "aria-labelledby": "watch-delete-title", "aria-describedby": "watch-delete-text" },
    h("h2", { id: "watch-delete-title" }, "Delete this watch?"), text, h("div", { class: "actions" }, keep, confirm));
  let deleting = null;
  keep.addEventListener("click", () => dialog.close());
  confirm.addEventListener("click", async () => {
    const w = deleting;
    dialog.close();
    try {
      await call(DELETE, { id: w.id });
      announce(`Deleted the watch ${w.name || w.id}`);
      onDeleted(w);
    } catch (e) {
      onError(e);
    }
  });
  return {
    element: dialog,
    ask(w) {
      deleting = w;
      text.replaceChildren("Its ", String(w.domainCount), w.domainCount === 1 ? " domain is" : " domains are",
        " no longer checked for ", w.name ? h("strong", {}, w.name) : h("code", {}, w.id),
        ", and no more icon.changed events are sent for it. This cannot be undone.");
      dialog.showModal();
      keep.focus();
    },
  };
}

/** The list of watches and the create form; returns its cleanup. */
export function renderWatches(main) {
  const message = h("p", { role: "alert", class: "error", id: "watches-message" });
  const list = h("ul", { class: "watches", id: "watches-list", "aria-label": "Watches" });

  const domains = h("textarea", { id: "watch-domains", name: "domains", rows: 6, required: true, spellcheck: "false", "aria-describedby": "watch-domains-hint" });
  const every = h("input", { id: "watch-every", name: "every", type: "number", min: 1, step: 1, value: 24, required: true, inputmode: "numeric", "aria-describedby": "watch-every-hint" });
  const unit = h("select", { id: "watch-unit", name: "unit", "aria-label": "Unit of the period" }, UNITS.map(([v, t]) => h("option", { value: v }, t)));
  const name = h("input", { id: "watch-name", name: "name", maxlength: 200, autocomplete: "off" });
  const errors = h("div", { id: "watch-errors", role: "alert" });
  const create = h("button", { type: "submit" }, "Watch");
  const form = h("form", { id: "watch-form", novalidate: true },
    h("label", { for: "watch-domains" }, "Domains"),
    h("p", { id: "watch-domains-hint", class: "hint" }, "One domain or URL per line."),
    domains,
    h("label", { for: "watch-every" }, "Check every"),
    h("p", { id: "watch-every-hint", class: "hint" }, "Each domain is looked at again this often (at least an hour unless the server allows less); the first checks are spread over one period."),
    h("div", { class: "inline" }, every, unit),
    h("label", { for: "watch-name" }, "Name ", h("span", { class: "hint" }, "(optional)")), name,
    errors, create);

  const dialog = deleteDialog({
    onDeleted: () => load(),
    onError: (e) => (message.textContent = e.message),
  });

  main.append(
    h("section", { class: "panel", "aria-labelledby": "watches-title" },
      h("h2", { id: "watches-title" }, "Watches"),
      h("p", { class: "hint" }, "Domains the service looks at again on a schedule; a changed icon is sent as icon.changed to your webhooks."),
      message, list),
    h("section", { class: "panel", "aria-labelledby": "watch-create-title" },
      h("h2", { id: "watch-create-title" }, "Watch domains"), form),
    dialog.element,
  );

  let stopped = false;

  async function load() {
    let data;
    try {
      data = await call(LIST);
    } catch (e) {
      message.textContent = e.message;
      return;
    }
    if (stopped) return;
    message.textContent = "";
    // Without a key every client's watches come back: show the dashboard's client's, as the
    // other pages do.
    const client = clientArg();
    const watches = data.watches.filter((w) => !client || w.clientId === client);
    list.replaceChildren(
      ...(watches.length ? [] : [h("li", { class: "hint" }, "No watches yet: watch some domains below.")]),
      ...watches.map((w) => {
        const shown = w.domains.items.map((d) => d.domain);
        const more = w.domainCount - shown.length;
        return h("li", { "data-watch": w.id },
          h("a", { href: `#/watches/${w.id}`, class: "name" }, w.name || "Unnamed watch"),
          h("span", { class: "domains" }, shown.join(", "), more > 0 ? ` and ${more} more` : ""),
          h("span", { class: "every" }, `${w.domainCount} ${w.domainCount === 1 ? "domain" : "domains"}, every ${period(w.every)}`),
          h("span", { class: "changes" }, `${w.changeCount} ${w.changeCount === 1 ? "change" : "changes"}`,
            w.lastChangeAt ? `, the last ${when(w.lastChangeAt)}` : ""),
          h("div", { class: "actions" },
            h("button", { type: "button", class: "danger delete", "aria-label": `Delete ${w.name || "the unnamed watch"}`, onclick: () => dialog.ask(w) }, "Delete")));
      }),
    );
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.replaceChildren();
    const entries = parseList(domains.value);
    if (!entries.length) {
      errors.append(h("p", { class: "error" }, "Enter at least one domain."));
      domains.focus();
      return;
    }
    const amount = Number(every.value);
    if (every.value === "" || !Number.isFinite(amount)) {
      errors.append(h("p", { class: "error" }, "Enter how often to check, as a number."));
      every.focus();
      return;
    }
    const input = {
      domains: entries.map((e) => e.value),
      // The API says what is too short or too long; the page only converts.
      every: Math.round(amount * Number(unit.value)),
      name: name.value.trim() || null,
      clientId: clientArg(),
    };
    create.disabled = true;
    try {
      const { createWatch } = await call(CREATE, { input });
      form.reset();
      announce("Watch created");
      location.hash = `#/watches/${createWatch.id}`;
    } catch (e) {
      errors.append(h("p", { class: "error" }, e.message));
      // A bad domain is listed with its position in what was sent.
      if (Array.isArray(e.details)) {
        errors.append(h("ul", { class: "line-errors" }, e.details.map((d) =>
          h("li", {}, `Line ${entries[d.position]?.line ?? d.position + 1}: `, h("code", {}, d.value), ` — ${d.reason}`))));
      }
    } finally {
      create.disabled = false;
    }
  });

  load();
  return () => {
    stopped = true;
  };
}

/** One watch: its domains and its changes, followed live; returns its cleanup. */
export function renderWatch(main, watchId) {
  const title = h("h2", { id: "watch-title" }, "Watch");
  const facts = h("dl", { class: "counts", id: "watch-facts" });
  const message = h("p", { role: "alert", class: "error", id: "watch-message" });
  const remove = h("button", { type: "button", class: "danger", id: "watch-delete" }, "Delete");

  const domainsMessage = h("p", { role: "alert", class: "error", id: "watch-domains-message" });
  const domainsTable = table("watch-domains-table", "The watched domains, in the order given",
    ["Icon", "Domain", "Last check", "Last error", "Next check"]);
  const domainsPager = pager("watch-domains-pager", "Pages of domains", (p) => loadDomains(p));

  const changesMessage = h("p", { role: "alert", class: "error", id: "watch-changes-message" });
  const changesTable = table("watch-changes", "Changes of the icons, newest first",
    ["Domain", "Before", "", "After", "Detected"]);
  const changesPager = pager("watch-changes-pager", "Pages of changes", (p) => loadChanges(p));
  const liveState = h("p", { class: "hint", id: "watch-live", "aria-live": "polite" });

  const dialog = deleteDialog({
    onDeleted: () => (location.hash = "#/watches"),
    onError: (e) => (message.textContent = e.message),
  });

  main.append(
    h("p", {}, h("a", { href: "#/watches" }, "← All watches")),
    h("section", { class: "panel", "aria-labelledby": "watch-title" },
      title, facts, message, h("div", { class: "actions" }, remove)),
    h("section", { class: "panel", "aria-labelledby": "watch-changes-title" },
      h("h2", { id: "watch-changes-title" }, "Changes"), liveState, changesMessage, changesTable.element, changesPager.element),
    h("section", { class: "panel", "aria-labelledby": "watch-domains-title" },
      h("h2", { id: "watch-domains-title" }, "Domains"), domainsMessage, domainsTable.element, domainsPager.element),
    dialog.element,
  );

  let watch = null;
  let stopped = false;
  let domainsPage = 1;
  let changesPage = 1;
  // The page's size is what the API answered (the operation names it).
  let changes = { total: 0, items: [], perPage: 20 };
  let poll = null;
  // Changes the subscription sent, by id, so a page read meanwhile does not hide them.
  const arrivals = new Map();

  function drawFacts() {
    title.replaceChildren(watch.name ? `Watch ${watch.name}` : "Unnamed watch");
    const pairs = [
      ["Domains", String(watch.domainCount)],
      ["Every", period(watch.every)],
      ["Changes", String(watch.changeCount)],
      ["Last change", when(watch.lastChangeAt)],
      ["Created", when(watch.createdAt)],
    ];
    facts.replaceChildren(...pairs.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", { "data-key": k.toLowerCase().replace(" ", "-") }, v))));
  }

  async function loadWatch() {
    try {
      const data = await call(WATCH, { id: watchId });
      if (stopped) return false;
      if (!data.watch) {
        message.textContent = "There is no such watch (it was deleted, or it is another client's).";
        return false;
      }
      watch = data.watch;
      drawFacts();
      return true;
    } catch (e) {
      message.textContent = e.message;
      return false;
    }
  }

  async function loadDomains(page) {
    try {
      const data = await call(DOMAINS, { id: watchId, page });
      if (stopped || !data.watch) return;
      const p = data.watch.domains;
      domainsPage = p.page;
      domainsMessage.textContent = "";
      domainsTable.body.replaceChildren(...p.items.map(domainRow));
      domainsPager.draw(p.page, p.perPage, p.total);
    } catch (e) {
      domainsMessage.textContent = e.message;
    }
  }

  function drawChanges() {
    changesTable.body.replaceChildren(
      ...(changes.items.length ? [] : [h("tr", {}, h("td", { colspan: 5, class: "hint" }, "No changes yet."))]),
      ...changes.items.map(changeRow),
    );
    changesPager.draw(changesPage, changes.perPage, changes.total);
  }

  async function loadChanges(page) {
    try {
      const data = await call(CHANGES, { id: watchId, page });
      if (stopped || !data.watch) return;
      changesPage = data.watch.changes.page;
      let { total, items, perPage } = data.watch.changes;
      if (changesPage === 1) {
        // A change sent while this page was on its way may be newer than the page.
        const missed = [...arrivals.values()]
          .filter((c) => !items.some((x) => x.id === c.id) && (!items[0] || c.detectedAt >= items[0].detectedAt))
          .sort((a, b) => b.detectedAt.localeCompare(a.detectedAt));
        items = [...missed, ...items].slice(0, perPage);
        total += missed.length;
      }
      changes = { total, items, perPage };
      changesMessage.textContent = "";
      if (watch) {
        watch = { ...watch, changeCount: data.watch.changeCount, lastChangeAt: data.watch.lastChangeAt };
        drawFacts();
      }
      drawChanges();
    } catch (e) {
      changesMessage.textContent = e.message;
    }
  }

  /** A change from the subscription: on the first page it shows at once, on others it counts. */
  function arrived(c) {
    arrivals.set(c.id, c);
    if (changes.items.some((x) => x.id === c.id)) return;
    changes.total += 1;
    if (changesPage === 1) changes.items = [c, ...changes.items].slice(0, changes.perPage);
    if (watch) {
      watch = { ...watch, changeCount: watch.changeCount + 1, lastChangeAt: c.detectedAt };
      drawFacts();
    }
    drawChanges();
    announce(`The icon of ${c.domain} changed`);
    // The domain's last check and current icon moved with it.
    loadDomains(domainsPage);
  }

  let unsubscribe = null;
  function follow() {
    unsubscribe = live().subscribe(FOLLOW, () => {
      // Asked each time the subscription is sent (first, and on every new socket); it starts
      // from that moment, so what was found before, or while the socket was down, is read
      // now. A change read and also sent shows once: rows are told apart by id.
      loadChanges(changesPage);
      return { watchId };
    }, {
      next: (payload) => {
        if (!payload.data) {
          changesMessage.textContent = new ApiError(payload.errors || []).message;
          return;
        }
        liveState.textContent = "New changes show here as they are found.";
        arrived(payload.data.iconChanged);
      },
      error: (errors) => {
        changesMessage.textContent = new ApiError(Array.isArray(errors) ? errors : [errors]).message;
        liveState.textContent = "";
      },
      complete: () => (liveState.textContent = ""),
      refused: () => {
        // Only when the socket never opens: a proxy that refuses WebSockets.
        liveState.textContent = `New changes show here within ${POLL_MS / 1000} s.`;
        const tick = async () => {
          if (stopped) return;
          if (changesPage === 1) await loadChanges(1);
          poll = setTimeout(tick, POLL_MS);
        };
        poll = setTimeout(tick, POLL_MS);
      },
    });
    liveState.textContent = "New changes show here as they are found.";
  }

  remove.addEventListener("click", () => watch && dialog.ask(watch));

  loadWatch().then((found) => {
    if (!found || stopped) return;
    // The first page of changes is read at once, and again as the subscription is sent.
    loadChanges(1);
    loadDomains(1);
    follow();
  });

  return () => {
    stopped = true;
    clearTimeout(poll);
    if (unsubscribe) unsubscribe();
  };
}
