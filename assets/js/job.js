// One job: live progress, throughput and ETA from jobProgress, Stop, CSV, failures grouped
// by reason with "run these again", filters, the icon grid and a per-domain drill-down.

import { call, createJob, failedDomains, followJob } from "./api.js";
import { announce, duration, h, progressBar } from "./dom.js";
import { createGrid } from "./grid.js";

// The operations are written out whole (no interpolation): tests read them from this file
// and run them against the deployed limits.
const JOB = `query($id: ID!) { job(id: $id) {
  id status priority progress total completed failed createdAt downloadUrl
  failuresByReason { errorCode count }
  queue { pending inFlight otherJobs otherClients otherClientsPending } } }`;
const STANDING = `query($id: ID!) { job(id: $id) { status completed failed
  queue { pending inFlight otherJobs otherClients otherClientsPending } } }`;

// How often a running job's standing among the other clients' work is read again: progress
// events do not carry it.
const QUEUE_EVERY_MS = 5_000;

const count = (n, one, many) => `${n.toLocaleString("en-US")} ${n === 1 ? one : many}`;

/**
 * What a running job waits on, in words: who it shares the workers with (counts only) and
 * how much of it is being fetched; "" once it is final.
 */
export function standingText(queue, done) {
  if (!queue) return "";
  const others = queue.otherClients === 0
    ? "No other client's work is waiting"
    : `Sharing the workers with ${count(queue.otherClients, "other client", "other clients")} ` +
      `(${count(queue.otherClientsPending, "of their domains", "of their domains")} waiting)`;
  if (queue.inFlight === 0 && done === 0) return `Waiting for a worker. ${others}.`;
  const own = queue.inFlight === 0
    ? "none of this job's domains is being fetched at this moment"
    : `${count(queue.inFlight, "of this job's domains is", "of this job's domains are")} being fetched now`;
  return `${others}; ${own}.`;
}

// The window throughput is measured over: long enough to be steady, short enough to follow.
const RATE_WINDOW_MS = 10_000;

/** Renders the view; returns its cleanup. */
export function renderJob(main, jobId) {
  const bar = progressBar("Job progress");
  const status = h("span", { class: "status", id: "job-status" });
  const priority = h("span", { class: "priority", id: "job-priority" });
  const standing = h("p", { class: "hint", id: "job-queue", "aria-live": "polite" });
  const counts = h("dl", { class: "counts", id: "job-counts" });
  // Hidden until the job is known to be running: a finished job has nothing to stop.
  const stop = h("button", { type: "button", id: "stop", class: "danger", hidden: true }, "Stop");
  const csv = h("a", { id: "csv", class: "button", download: "" }, "Download CSV");
  const message = h("p", { role: "alert", id: "job-message" });
  const groups = h("ul", { id: "failure-groups", class: "groups" });
  const dialog = h("dialog", { id: "drill", "aria-labelledby": "drill-title" });
  const grid = createGrid(jobId, { onSelect: (domain) => drill(domain) });
  let failures = new Map();
  let state = null;
  const samples = [];

  const statusFilter = h("select", { id: "filter-status" },
    h("option", { value: "" }, "Any"), h("option", { value: "SUCCESS" }, "Found"),
    h("option", { value: "FAILED" }, "Failed"), h("option", { value: "PENDING" }, "Pending"));
  const codeFilter = h("select", { id: "filter-code" }, h("option", { value: "" }, "Any"));
  const search = h("input", { id: "filter-domain", type: "search", autocomplete: "off", spellcheck: "false" });
  const filters = h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
    h("label", { for: "filter-status" }, "Status"), statusFilter,
    h("label", { for: "filter-code" }, "Error"), codeFilter,
    h("label", { for: "filter-domain" }, "Domain contains"), search);
  const applyFilters = () =>
    grid.reset({ status: statusFilter.value || null, errorCode: codeFilter.value || null, domain: search.value.trim() || null });
  statusFilter.addEventListener("change", applyFilters);
  codeFilter.addEventListener("change", applyFilters);
  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(applyFilters, 250);
  });

  main.append(
    h("section", { class: "panel job", "aria-labelledby": "job-title" },
      h("h2", { id: "job-title" }, "Job ", h("code", {}, jobId)),
      h("div", { class: "summary" }, status, priority, bar, h("div", { class: "actions" }, stop, csv)),
      standing, counts, message),
    h("section", { class: "panel", "aria-labelledby": "groups-title" },
      h("h2", { id: "groups-title" }, "Failures by reason"), groups),
    h("section", { class: "panel", "aria-labelledby": "icons-title" },
      h("h2", { id: "icons-title" }, "Icons"), filters, grid.element),
    dialog,
  );

  function drawGroups() {
    const sorted = [...failures].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    groups.replaceChildren(
      ...(sorted.length ? [] : [h("li", { class: "hint" }, "No failures.")]),
      ...sorted.map(([code, count]) =>
        h("li", { "data-code": code },
          h("span", { class: "code" }, code), h("span", { class: "count" }, String(count)),
          h("button", { type: "button", onclick: () => ((codeFilter.value = code), (statusFilter.value = "FAILED"), applyFilters()) }, "Show"),
          h("button", { type: "button", class: "again", onclick: (e) => runAgain(code, e.currentTarget) }, "Run these again"))),
    );
    const chosen = codeFilter.value;
    codeFilter.replaceChildren(h("option", { value: "" }, "Any"), ...sorted.map(([code]) => h("option", { value: code }, code)));
    if (chosen && !failures.has(chosen)) codeFilter.append(h("option", { value: chosen }, chosen));
    codeFilter.value = chosen;
  }

  function draw(p) {
    state = { ...state, ...p };
    const done = p.completed + p.failed;
    const now = performance.now();
    samples.push([now, done]);
    while (samples.length > 2 && now - samples[0][0] > RATE_WINDOW_MS) samples.shift();
    const [t0, d0] = samples[0];
    const rate = now > t0 ? ((done - d0) * 1000) / (now - t0) : 0;
    const running = p.status === "PROCESSING";
    bar.value = p.progress;
    status.textContent = p.status;
    status.className = `status ${p.status.toLowerCase()}`;
    stop.hidden = !running;
    if (state.priority) priority.textContent = `${state.priority.toLowerCase()} priority`;
    standing.textContent = running ? standingText(state.queue, done) : "";
    standing.hidden = !standing.textContent;
    const pairs = [
      ["Done", `${done} / ${p.total} (${p.progress} %)`],
      ["Found", p.completed],
      ["Failed", p.failed],
      ["Rate", running ? `${rate.toFixed(1)} domains/s` : "—"],
      ["ETA", running && rate > 0 ? duration((p.total - done) / rate) : "—"],
    ];
    // A div per pair (allowed in a dl) is the grid's cell, keeping each value with its label.
    counts.replaceChildren(...pairs.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", { "data-key": k.toLowerCase() }, String(v)))));
  }

  async function refresh() {
    try {
      const { job } = await call(JOB, { id: jobId });
      csv.href = job.downloadUrl;
      failures = new Map(job.failuresByReason.map((g) => [g.errorCode, g.count]));
      drawGroups();
      draw(job);
      return job;
    } catch (e) {
      message.textContent = e.message;
      return null;
    }
  }

  // The standing changes as other clients' work comes and goes, not only with this job's
  // events: read it again while the job runs.
  const standingTimer = setInterval(async () => {
    if (state?.status !== "PROCESSING") return;
    try {
      const { job } = await call(STANDING, { id: jobId });
      state = { ...state, queue: job.queue };
      standing.textContent = job.status === "PROCESSING" ? standingText(job.queue, job.completed + job.failed) : "";
      standing.hidden = !standing.textContent;
    } catch {
      // The next refresh says what is wrong; the line keeps its last words meanwhile.
    }
  }, QUEUE_EVERY_MS);

  // Set when the socket came back: the resumed events may name a domain twice, so failures
  // are not counted from them; the groups are read again once the events have caught up.
  let regroup = false;
  let unfollow = null;
  // The job's finished count is read before the grid's first page, and the subscription
  // starts after it: a domain that finishes between the grid's read and the subscription
  // still arrives in an event. Then the grid's first page and the job's counts are read side
  // by side: the first icons do not wait for the failure groups, which cost a scan.
  const counted = call(`query($id: ID!) { job(id: $id) { completed failed } }`, { id: jobId }).then(
    ({ job }) => job.completed + job.failed,
    // The page still works from the job's state; refresh() below says what is wrong.
    () => null,
  );
  counted.then((start) => {
    applyFilters();
    refresh().then((job) => {
      if (!job) return;
      if (job.status !== "PROCESSING") return;
      unfollow = followJob(jobId, {
        after: start,
        onEvent: (p) => {
          if (regroup) {
            // Caught up once the cursor reaches the job's finished count: read the groups.
            if (p.cursor >= p.completed + p.failed) {
              regroup = false;
              refresh();
            }
          } else {
            for (const r of p.results) {
              if (r.status === "FAILED") failures.set(r.errorCode || "unknown", (failures.get(r.errorCode || "unknown") || 0) + 1);
            }
            if (p.results.some((r) => r.status === "FAILED")) drawGroups();
          }
          grid.update(p.results);
          draw(p);
        },
        onResume: () => (regroup = true),
        onError: (e) => (message.textContent = e.message),
        onDone: () => {
          announce(`Job ${state?.status?.toLowerCase() || "finished"}`);
          refresh();
        },
      });
    });
  });

  stop.addEventListener("click", async () => {
    stop.disabled = true;
    try {
      const { cancelJob } = await call(`mutation($id: ID!) { cancelJob(id: $id) { status progress total completed failed } }`, { id: jobId });
      draw(cancelJob);
      announce("Job stopped");
    } catch (e) {
      message.textContent = e.message;
    } finally {
      stop.disabled = false;
    }
  });

  async function runAgain(code, button) {
    button.disabled = true;
    try {
      const domains = await failedDomains(jobId, code);
      const id = await createJob(domains, 0);
      location.hash = `#/jobs/${id}`;
    } catch (e) {
      message.textContent = e.message;
      button.disabled = false;
    }
  }

  async function drill(domain) {
    const title = h("h2", { id: "drill-title" }, domain);
    const close = h("button", { type: "button", class: "close", onclick: () => dialog.close() }, "Close");
    const body = h("div", { id: "drill-body" }, h("p", {}, "Loading…"));
    dialog.replaceChildren(title, body, close);
    dialog.showModal();
    close.focus();
    try {
      const { results } = await call(
        `query($jobId: ID!, $domain: String) { results(jobId: $jobId, domain: $domain, perPage: 100) { results {
          domain status error errorCode finalUrl mime width height
          candidates { url source declaredSizes declaredType mime width height error } } } }`,
        { jobId, domain },
      );
      const r = results.results.find((x) => x.domain === domain);
      if (!r) throw new Error(`${domain} is not in this job`);
      const size = (w, ht) => (w === null || w === undefined ? "—" : `${w}×${ht}`);
      body.replaceChildren(
        h("p", {}, `${r.status}`, r.error ? ` — ${r.error}` : "", r.finalUrl ? ` (home page ${r.finalUrl})` : ""),
        r.candidates.length === 0
          ? h("p", {}, "No candidates were found.")
          : h("div", { class: "table-wrap" }, h("table", { id: "candidates" },
              h("caption", {}, `${r.candidates.length} candidates, in rank order`),
              h("thead", {}, h("tr", {}, ["Source", "URL", "Declared size", "Real size", "MIME", "Error"].map((c) => h("th", { scope: "col" }, c)))),
              h("tbody", {}, r.candidates.map((c) => h("tr", {},
                h("td", {}, c.source), h("td", { class: "url" }, c.url), h("td", {}, c.declaredSizes || "—"),
                h("td", {}, size(c.width, c.height)), h("td", {}, c.mime || c.declaredType || "—"), h("td", {}, c.error || "—")))))),
      );
    } catch (e) {
      body.replaceChildren(h("p", { class: "error" }, e.message));
    }
  }

  return () => {
    if (unfollow) unfollow();
    clearInterval(standingTimer);
    grid.destroy();
    clearTimeout(typing);
  };
}
