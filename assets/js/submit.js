// The submit form: paste domains or drop a .txt/.csv file, set maxAgeSeconds, and see the
// API's per-line errors next to the lines they name.

import { createJob } from "./api.js";
import { announce, h } from "./dom.js";

/**
 * Entries of a pasted or dropped list, with their line numbers (from 1): one domain per
 * line, or the first CSV column; blank lines, `#` comments and a `domain` header skipped.
 */
export function parseList(text) {
  return text
    .split(/\r?\n/)
    .map((raw, i) => ({ line: i + 1, value: raw.split(",")[0].trim().replace(/^"|"$/g, "") }))
    .filter(({ value }) => value && !value.startsWith("#") && !/^domains?$/i.test(value));
}

/** Renders the view; returns its cleanup. */
export function renderSubmit(main) {
  const textarea = h("textarea", { id: "domains", name: "domains", rows: 12, required: true, spellcheck: "false", "aria-describedby": "domains-hint" });
  const file = h("input", { id: "file", type: "file", accept: ".txt,.csv,text/plain,text/csv" });
  const maxAge = h("input", { id: "max-age", name: "maxAgeSeconds", type: "number", min: 0, step: 1, inputmode: "numeric", "aria-describedby": "max-age-hint" });
  const errors = h("div", { id: "submit-errors", role: "alert" });
  const button = h("button", { type: "submit" }, "Find favicons");
  const count = h("span", { id: "domain-count", class: "hint" }, "0 domains");

  const updateCount = () => (count.textContent = `${parseList(textarea.value).length} domains`);
  textarea.addEventListener("input", updateCount);

  async function load(f) {
    if (!f) return;
    textarea.value = await f.text();
    updateCount();
    announce(`Loaded ${f.name}`);
  }
  file.addEventListener("change", () => load(file.files[0]));
  const drop = h("div", { class: "drop", id: "drop" }, h("p", {}, "Drop a .txt or .csv file here, or "), h("label", { for: "file", class: "file-label" }, "choose a file"), file);
  for (const name of ["dragenter", "dragover"]) drop.addEventListener(name, (e) => (e.preventDefault(), drop.classList.add("over")));
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    load(e.dataTransfer.files[0]);
  });

  const form = h(
    "form",
    { id: "submit-form", class: "panel", novalidate: true },
    h("h2", {}, "Find favicons"),
    h("label", { for: "domains" }, "Domains"),
    h("p", { id: "domains-hint", class: "hint" }, "One domain or URL per line."),
    textarea,
    count,
    drop,
    h("label", { for: "max-age" }, "Reuse results fetched within (seconds)"),
    h("p", { id: "max-age-hint", class: "hint" }, "Leave empty for the server's default; 0 always fetches."),
    maxAge,
    errors,
    button,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.replaceChildren();
    const entries = parseList(textarea.value);
    const domains = entries.map((e) => e.value);
    if (!domains.length) {
      errors.append(h("p", { class: "error" }, "Enter at least one domain."));
      textarea.focus();
      return;
    }
    button.disabled = true;
    try {
      const age = maxAge.value === "" ? null : Number(maxAge.value);
      const id = await createJob(domains, age);
      location.hash = `#/jobs/${id}`;
    } catch (e) {
      errors.append(h("p", { class: "error" }, e.message));
      // INVALID_DOMAINS lists each bad entry with its position in what was sent.
      if (Array.isArray(e.details)) {
        errors.append(
          h("ul", { class: "line-errors" }, e.details.map((d) => h("li", {}, `Line ${entries[d.position]?.line ?? d.position + 1}: `, h("code", {}, d.value), ` — ${d.reason}`))),
        );
      }
      textarea.focus();
    } finally {
      button.disabled = false;
    }
  });
  main.append(form);
  return null;
}
