// The dashboard's entry: settings (API key, client id), and a hash router over the views
// (#/ submit, #/jobs the list, #/jobs/{id} one job, #/webhooks the endpoints, #/watches the
// watches, #/watches/{id} one watch).

import { NEED_KEY, apiKey, clientId, setApiKey, setClientId } from "./api.js";
import { renderSubmit } from "./submit.js";
import { renderJobs } from "./jobs.js";
import { renderJob } from "./job.js";
import { renderWebhooks } from "./webhooks.js";
import { renderWatch, renderWatches } from "./watches.js";

const main = document.getElementById("main");
const settings = document.getElementById("settings");
const toggle = document.getElementById("settings-toggle");
// Each view may leave a cleanup (closing subscriptions, observers) for the next route.
let cleanup = null;

function showSettings(open, reason) {
  settings.hidden = !open;
  toggle.setAttribute("aria-expanded", String(open));
  const why = document.getElementById("settings-reason");
  why.hidden = !reason;
  why.textContent = reason || "";
  if (open) document.getElementById(reason ? "api-key" : "client-id").focus();
}

toggle.addEventListener("click", () => showSettings(settings.hidden));
document.getElementById("settings-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setApiKey(document.getElementById("api-key").value.trim());
  setClientId(document.getElementById("client-id").value.trim());
  showSettings(false);
  route();
});
document.getElementById("api-key").value = apiKey();
document.getElementById("client-id").value = clientId();
window.addEventListener(NEED_KEY, (event) => showSettings(true, `An API key is needed: ${event.detail}`));

function route() {
  if (cleanup) cleanup();
  cleanup = null;
  main.replaceChildren();
  const hash = location.hash.replace(/^#/, "") || "/";
  const job = hash.match(/^\/jobs\/([0-9a-fA-F-]{36})$/);
  const watch = hash.match(/^\/watches\/([0-9a-fA-F-]{36})$/);
  let title;
  if (job) {
    cleanup = renderJob(main, job[1]);
    title = "Job";
  } else if (hash === "/jobs") {
    cleanup = renderJobs(main);
    title = "Jobs";
  } else if (watch) {
    cleanup = renderWatch(main, watch[1]);
    title = "Watch";
  } else if (hash === "/watches") {
    cleanup = renderWatches(main);
    title = "Watches";
  } else if (hash === "/webhooks") {
    cleanup = renderWebhooks(main);
    title = "Webhooks";
  } else {
    cleanup = renderSubmit(main);
    title = "Submit";
  }
  document.title = `${title} · favicon-finder`;
  for (const link of document.querySelectorAll("nav a")) {
    // One watch is still under Watches.
    const href = link.getAttribute("href");
    if (href === `#${hash}` || (watch && href === "#/watches")) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

window.addEventListener("hashchange", () => {
  route();
  main.focus();
});
route();
