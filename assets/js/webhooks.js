// The caller's webhook endpoints over REST: register one (its secret shown once, never kept),
// list them with their state, and for the selected one its recent deliveries, "Send test
// event", redeliver, and delete after a confirm. URLs, descriptions and errors are written by
// users or by remote receivers, so they only ever reach the page as text (h() appends text
// nodes; nothing here parses HTML).

import { clientArg, rest } from "./api.js";
import { announce, h } from "./dom.js";

// The events an endpoint may take (webhook.test is sent on demand to any endpoint); the ones
// checked are what the service subscribes by default.
const EVENTS = [
  ["job.completed", "A job completed", true],
  ["job.failed", "A job failed", true],
  ["job.cancelled", "A job was cancelled", true],
  ["job.progress", "A job's progress, at most once a minute", false],
  ["icon.changed", "A watched domain's icon changed", true],
];

// While a shown delivery still waits, the endpoints and deliveries are read again this often
// (an endpoint may be disabled meanwhile).
const REFRESH_MS = 2_000;

const when = (t) => (t ? new Date(t).toLocaleString() : "—");

/**
 * Replaces `container`'s rows (elements with a `data-{key}` attribute) with `rows`; when a
 * button of a row had the focus, the same button of the new row takes it, so a refresh never
 * throws a keyboard user back to the top.
 */
function redraw(container, key, rows) {
  const active = container.contains(document.activeElement) ? document.activeElement : null;
  const row = active?.closest(`[data-${key}]`)?.getAttribute(`data-${key}`);
  const kind = active?.classList.item(active.classList.length - 1);
  container.replaceChildren(...rows);
  if (!row || !kind) return;
  const again = [...container.querySelectorAll(`[data-${key}]`)].find((r) => r.getAttribute(`data-${key}`) === row);
  again?.querySelector(`button.${kind}`)?.focus();
}

/** One delivery as a table row; `onRedeliver(delivery, button)` sends its event again. */
function deliveryRow(d, onRedeliver) {
  const last = d.attempt_log.at(-1);
  const answer = [d.last_status_code ? `HTTP ${d.last_status_code}` : null, d.last_error].filter(Boolean).join(": ");
  const status = h("td", {}, h("span", { class: `status ${d.status}` }, d.status));
  if (d.status === "pending" && d.next_attempt_at) status.append(h("span", { class: "hint" }, ` next try ${when(d.next_attempt_at)}`));
  return h("tr", { "data-delivery": d.id, "data-status": d.status, "data-event-id": d.event_id },
    h("td", {}, h("code", {}, d.event_type)),
    status,
    h("td", { class: "attempts" }, String(d.attempts)),
    h("td", { class: "answer" }, answer || "—"),
    h("td", {}, h("time", { datetime: last?.at || d.created_at }, when(last?.at || d.created_at))),
    h("td", { class: "latency" }, last ? `${last.latency_ms} ms` : "—"),
    h("td", {}, h("button", {
      type: "button", class: "redeliver",
      "aria-label": `Redeliver the ${d.event_type} event of ${when(d.created_at)}`,
      onclick: (e) => onRedeliver(d, e.currentTarget),
    }, "Redeliver")));
}

/** Renders the view; returns its cleanup. */
export function renderWebhooks(main) {
  const message = h("p", { role: "alert", class: "error", id: "webhooks-message" });
  const list = h("ul", { class: "webhooks", id: "webhooks-list", "aria-label": "Endpoints" });
  const secretBox = h("section", { class: "panel secret", id: "webhook-secret", "aria-labelledby": "secret-title", hidden: true });

  const url = h("input", { id: "webhook-url", name: "url", type: "url", required: true, autocomplete: "off", spellcheck: "false", placeholder: "https://example.com/hooks/favicons" });
  const description = h("input", { id: "webhook-description", name: "description", maxlength: 500, autocomplete: "off" });
  const formError = h("p", { role: "alert", class: "error", id: "webhook-errors" });
  const register = h("button", { type: "submit" }, "Register");
  const form = h("form", { id: "webhook-form" },
    h("label", { for: "webhook-url" }, "URL"), url,
    h("fieldset", {},
      h("legend", {}, "Events"),
      EVENTS.map(([name, label, on]) =>
        h("label", { class: "check" }, h("input", { type: "checkbox", name: "events", value: name, checked: on }), label, " ", h("code", {}, name)))),
    h("label", { for: "webhook-description" }, "Description ", h("span", { class: "hint" }, "(optional)")), description,
    formError, register);

  const target = h("p", { class: "url", id: "deliveries-url" });
  const sendTest = h("button", { type: "button", id: "send-test" }, "Send test event");
  const refresh = h("button", { type: "button", id: "refresh-deliveries" }, "Refresh");
  const deliveriesMessage = h("p", { role: "alert", class: "error", id: "deliveries-message" });
  const rows = h("tbody");
  const table = h("table", { id: "deliveries" },
    h("caption", { class: "visually-hidden" }, "Recent deliveries, newest first"),
    h("thead", {}, h("tr", {},
      ...["Event", "Status", "Attempts", "Last answer", "Time", "Latency"].map((t) => h("th", { scope: "col" }, t)),
      h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
    rows);
  const deliveriesPanel = h("section", { class: "panel", id: "deliveries-panel", "aria-labelledby": "deliveries-title", hidden: true },
    h("h2", { id: "deliveries-title" }, "Recent deliveries"), target,
    h("div", { class: "actions" }, sendTest, refresh), deliveriesMessage, h("div", { class: "table-wrap" }, table));

  const confirmText = h("p", { id: "delete-text" });
  const keep = h("button", { type: "button", id: "delete-cancel" }, "Keep it");
  const confirm = h("button", { type: "button", class: "danger", id: "delete-confirm" }, "Delete");
  const dialog = h("dialog", { id: "delete-dialog", "aria-labelledby": "delete-title", "aria-describedby": "delete-text" },
    h("h2", { id: "delete-title" }, "Delete this endpoint?"), confirmText, h("div", { class: "actions" }, keep, confirm));

  main.append(
    secretBox,
    h("section", { class: "panel", "aria-labelledby": "webhooks-title" },
      h("h2", { id: "webhooks-title" }, "Webhooks"),
      h("p", { class: "hint" }, "The service POSTs signed events (Standard Webhooks) to these URLs when your jobs end."),
      message, list),
    deliveriesPanel,
    h("section", { class: "panel", "aria-labelledby": "register-title" },
      h("h2", { id: "register-title" }, "Register an endpoint"), form),
    dialog,
  );

  let endpoints = [];
  let selected = null;
  let deleting = null;
  let timer = null;
  let stopped = false;
  // What the list and the table show, so a refresh that changes nothing redraws nothing.
  let drawnList = null;
  let drawnRows = null;
  // Bumped on every read of the deliveries, so a slow answer for another endpoint is dropped.
  let generation = 0;

  async function load(select) {
    let data;
    try {
      const client = clientArg();
      data = await rest("GET", client ? `/webhooks?client_id=${encodeURIComponent(client)}` : "/webhooks");
    } catch (e) {
      message.textContent = e.message;
      return;
    }
    if (stopped) return;
    message.textContent = "";
    endpoints = data.webhooks;
    if (select !== undefined) selected = select;
    if (!endpoints.some((w) => w.id === selected)) selected = endpoints[0]?.id ?? null;
    drawList();
    await loadDeliveries();
  }

  function drawList() {
    const shown = JSON.stringify([endpoints, selected]);
    if (shown === drawnList) return;
    drawnList = shown;
    redraw(list, "webhook", [
      ...(endpoints.length ? [] : [h("li", { class: "hint" }, "No endpoints yet: register one below.")]),
      ...endpoints.map((w) =>
        h("li", { "data-webhook": w.id, class: w.id === selected ? "selected" : null },
          h("code", { class: "url" }, w.url),
          w.description ? h("span", { class: "description" }, w.description) : null,
          h("span", { class: "events" }, `Events: ${w.events.join(", ")}`),
          w.enabled
            ? h("span", { class: "status enabled" }, "Enabled")
            : h("span", { class: "status disabled" }, "Disabled"),
          w.enabled ? null : h("p", { class: "error disabled-reason" },
            `Disabled ${when(w.disabled_at)}: ${w.disabled_reason || "no reason recorded"}`),
          w.failing_since ? h("p", { class: "hint" }, `Failing since ${when(w.failing_since)}`) : null,
          h("div", { class: "actions" },
            h("button", { type: "button", class: "show", "aria-pressed": String(w.id === selected), "aria-label": `Deliveries of ${w.url}`, onclick: () => choose(w.id) }, "Deliveries"),
            w.enabled ? null : h("button", { type: "button", class: "enable", "aria-label": `Enable ${w.url}`, onclick: (e) => act(e.currentTarget, message, `/webhooks/${w.id}/enable`, "Enabled again") }, "Enable"),
            h("button", { type: "button", class: "danger delete", "aria-label": `Delete ${w.url}`, onclick: () => askDelete(w) }, "Delete")))),
    ]);
  }

  function choose(id) {
    selected = id;
    deliveriesMessage.textContent = "";
    drawList();
    loadDeliveries();
  }

  async function loadDeliveries() {
    clearTimeout(timer);
    const mine = ++generation;
    const endpoint = endpoints.find((w) => w.id === selected);
    deliveriesPanel.hidden = !endpoint;
    if (!endpoint) return;
    target.textContent = endpoint.url;
    let data;
    try {
      data = await rest("GET", `/webhooks/${encodeURIComponent(endpoint.id)}/deliveries?per_page=20`);
    } catch (e) {
      if (mine === generation) deliveriesMessage.textContent = e.message;
      return;
    }
    if (stopped || mine !== generation) return;
    const shown = JSON.stringify([endpoint.id, data.deliveries]);
    if (shown !== drawnRows) {
      drawnRows = shown;
      redraw(rows, "delivery", [
        ...(data.deliveries.length ? [] : [h("tr", {}, h("td", { colspan: 7, class: "hint" }, "No deliveries yet: send a test event."))]),
        ...data.deliveries.map((d) => deliveryRow(d, (delivery, button) =>
          act(button, deliveriesMessage, `/webhooks/deliveries/${delivery.id}/redeliver`, `${delivery.event_type} queued again`))),
      ]);
    }
    if (data.deliveries.some((d) => d.status === "pending")) timer = setTimeout(() => load(), REFRESH_MS);
  }

  /** POSTs to `path` from `button`, says `done`, and reads the list again; errors go to `out`. */
  async function act(button, out, path, done) {
    // aria-disabled rather than disabled: a disabled button drops the keyboard focus.
    if (button.getAttribute("aria-disabled") === "true") return;
    button.setAttribute("aria-disabled", "true");
    out.textContent = "";
    try {
      await rest("POST", path);
      announce(done);
      await load();
    } catch (e) {
      out.textContent = e.message;
    } finally {
      button.removeAttribute("aria-disabled");
    }
  }

  function showSecret(created) {
    const value = h("code", { id: "secret-value" }, created.secret);
    const copy = h("button", { type: "button", id: "secret-copy" }, "Copy");
    copy.addEventListener("click", () => {
      getSelection().selectAllChildren(value);
      navigator.clipboard?.writeText(created.secret).then(() => announce("Secret copied"), () => announce("Copying was refused: the secret is selected, copy it by hand"));
    });
    const stored = h("button", { type: "button", id: "secret-done" }, "I have stored it");
    stored.addEventListener("click", () => {
      // Gone from the page for good: the service cannot show it again either.
      secretBox.replaceChildren();
      secretBox.hidden = true;
      url.focus();
    });
    secretBox.replaceChildren(
      h("h2", { id: "secret-title", tabindex: "-1" }, "Signing secret"),
      h("p", {}, "Registered ", h("code", { class: "url" }, created.url), ". Its events are signed with:"),
      value,
      h("p", { class: "note", id: "secret-note" },
        "This secret will not be shown again. Store it now where your receiver can read it: it verifies the webhook-signature header of every event."),
      h("div", { class: "actions" }, copy, stored),
    );
    secretBox.hidden = false;
    secretBox.querySelector("h2").focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const events = [...form.querySelectorAll("input[name=events]:checked")].map((b) => b.value);
    if (!events.length) {
      formError.textContent = "Choose at least one event.";
      return;
    }
    const body = { url: url.value.trim(), events };
    if (description.value.trim()) body.description = description.value.trim();
    const client = clientArg();
    if (client) body.client_id = client;
    register.disabled = true;
    formError.textContent = "";
    try {
      const created = await rest("POST", "/webhooks", body);
      form.reset();
      showSecret(created);
      await load(created.id);
    } catch (e) {
      formError.textContent = e.message;
    } finally {
      register.disabled = false;
    }
  });

  sendTest.addEventListener("click", () => act(sendTest, deliveriesMessage, `/webhooks/${selected}/test`, "Test event queued"));
  refresh.addEventListener("click", () => load());

  function askDelete(w) {
    deleting = w;
    confirmText.replaceChildren("Events will no longer be sent to ", h("code", { class: "url" }, w.url),
      ". Its deliveries still waiting fail. This cannot be undone.");
    dialog.showModal();
    keep.focus();
  }
  keep.addEventListener("click", () => dialog.close());
  confirm.addEventListener("click", async () => {
    const w = deleting;
    dialog.close();
    try {
      await rest("DELETE", `/webhooks/${w.id}`);
      announce(`Deleted ${w.url}`);
      if (selected === w.id) selected = null;
      await load();
    } catch (e) {
      message.textContent = e.message;
    }
  });

  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
