// The caller's jobs, newest first, with live status and progress bars for running ones.

import { call, clientArg, followJob } from "./api.js";
import { h, progressBar } from "./dom.js";

// Running jobs followed at once on this page; the rest show their last known state.
const LIVE_AT_MOST = 10;

/** Renders the view; returns its cleanup. */
export function renderJobs(main) {
  const list = h("ol", { class: "jobs", id: "jobs-list", "aria-label": "Jobs, newest first" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages of jobs" });
  const message = h("p", { role: "alert" });
  main.append(h("section", { class: "panel" }, h("h2", {}, "Jobs"), message, list, pager));
  let stops = [];
  const stopAll = () => {
    stops.forEach((stop) => stop());
    stops = [];
  };

  async function load(page) {
    stopAll();
    message.textContent = "";
    let data;
    try {
      data = await call(
        `query($clientId: String, $page: Int!) { jobs(clientId: $clientId, page: $page, perPage: 20) {
          total page perPage jobs { id status progress total completed failed createdAt } } }`,
        { clientId: clientArg(), page },
      );
    } catch (e) {
      message.textContent = e.message;
      return;
    }
    const { jobs, total, perPage } = data.jobs;
    list.replaceChildren();
    if (!jobs.length) list.append(h("li", {}, "No jobs yet. ", h("a", { href: "#/" }, "Submit some domains.")));
    for (const job of jobs) {
      const bar = progressBar(`Progress of job ${job.id}`);
      const status = h("span", { class: `status ${job.status.toLowerCase()}` }, job.status);
      const counts = h("span", { class: "counts" });
      const draw = (j) => {
        bar.value = j.progress;
        status.textContent = j.status;
        status.className = `status ${j.status.toLowerCase()}`;
        counts.textContent = `${j.completed + j.failed} / ${j.total} (${j.failed} failed)`;
      };
      draw(job);
      list.append(
        h("li", { "data-job": job.id },
          h("a", { href: `#/jobs/${job.id}` }, new Date(job.createdAt).toLocaleString()),
          status, bar, counts),
      );
      if (job.status === "PROCESSING" && stops.length < LIVE_AT_MOST) {
        stops.push(followJob(job.id, { onEvent: draw }));
      }
    }
    pager.replaceChildren();
    const pages = Math.max(1, Math.ceil(total / perPage));
    if (page > 1) pager.append(h("button", { type: "button", onclick: () => load(page - 1) }, "Newer"));
    pager.append(h("span", {}, ` Page ${page} of ${pages} `));
    if (page < pages) pager.append(h("button", { type: "button", onclick: () => load(page + 1) }, "Older"));
  }
  load(1);
  return stopAll;
}
