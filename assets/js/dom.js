// DOM helpers shared by the views.

/** Builds an element: h("a", {href: "#"}, "text", child...). `on*` attributes add listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A labelled progress bar. */
export function progressBar(label) {
  return h("progress", { max: 100, value: 0, "aria-label": label });
}

/** Says something to screen readers through the live region. */
export function announce(text) {
  const region = document.getElementById("status");
  if (region) region.textContent = text;
}

/** Seconds as "1 h 2 min", "3 min 4 s" or "5 s". */
export function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "—";
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${s} s`;
}

/** The icon URL of a domain on this service, as a square PNG so every format draws alike. */
export const iconUrl = (domain) => `/icons/${encodeURIComponent(domain)}?size=64`;
