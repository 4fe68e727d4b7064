// Talking to the API: GraphQL (and, for webhooks, REST) over fetch with the API key from sessionStorage, and the
// settings the dashboard keeps (the key for this tab only; the client id across visits).

import { createClient, wsUrl } from "./ws.js";

const KEY = "ff.apiKey";
const CLIENT = "ff.clientId";

/** The API key of this tab, or "". */
export const apiKey = () => sessionStorage.getItem(KEY) || "";
/** Remembers (or, with "", forgets) the API key for this tab. */
export const setApiKey = (key) => (key ? sessionStorage.setItem(KEY, key) : sessionStorage.removeItem(KEY));
/** The client id used without a key. */
export const clientId = () => localStorage.getItem(CLIENT) || "dashboard";
/** Remembers the client id. */
export const setClientId = (id) => localStorage.setItem(CLIENT, id || "dashboard");

/** The clientId argument to send: none with a key (the key names the client). */
export const clientArg = () => (apiKey() ? null : clientId());

/** The connection_init payload of a subscription socket. */
export const wsParams = () => (apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {});

/** A GraphQL error the API answered, with its code and per-item details. */
export class ApiError extends Error {
  constructor(errors) {
    const first = errors[0] || {};
    super(first.message || "the request failed");
    this.code = first.extensions?.code || "ERROR";
    this.details = first.extensions?.details || null;
  }
}

/** Runs a query or mutation; resolves with `data`, rejects with an ApiError. */
export async function gql(query, variables = {}) {
  const headers = { "Content-Type": "application/json" };
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  let response;
  try {
    response = await fetch("/graphql", { method: "POST", headers, body: JSON.stringify({ query, variables }) });
  } catch (e) {
    throw new ApiError([{ message: `the service cannot be reached (${e.message})`, extensions: { code: "NETWORK" } }]);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError([{ message: `the service answered ${response.status} without JSON`, extensions: { code: "HTTP" } }]);
  }
  if (body.errors?.length) throw new ApiError(body.errors);
  return body.data;
}

/** Emitted on window when a request needs a key: the settings panel opens. */
export const NEED_KEY = "ff-need-key";

/** Like gql, and asks for a key when the answer is UNAUTHORIZED. */
export async function call(query, variables) {
  try {
    return await gql(query, variables);
  } catch (e) {
    if (e.code === "UNAUTHORIZED" || e.code === "FORBIDDEN") window.dispatchEvent(new CustomEvent(NEED_KEY, { detail: e.message }));
    throw e;
  }
}

/**
 * Calls the REST API: `method` on `path` with an optional JSON `body`, the key when there is
 * one. Resolves with the parsed answer (null for 204); rejects with an ApiError carrying the
 * answer's `error.code`, and asks for a key on UNAUTHORIZED or FORBIDDEN like `call`.
 */
export async function rest(method, path, body) {
  const headers = {};
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  // The server refuses a POST without this type, even an empty one.
  if (method === "POST") headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError([{ message: `the service cannot be reached (${e.message})`, extensions: { code: "NETWORK" } }]);
  }
  if (response.status === 204) return null;
  let answer;
  try {
    answer = await response.json();
  } catch {
    throw new ApiError([{ message: `the service answered ${response.status} without JSON`, extensions: { code: "HTTP" } }]);
  }
  if (!response.ok) {
    const error = answer?.error || {};
    const e = new ApiError([{ message: error.message || `the service answered ${response.status}`, extensions: { code: error.code || "HTTP", details: error.details } }]);
    if (e.code === "UNAUTHORIZED" || e.code === "FORBIDDEN") window.dispatchEvent(new CustomEvent(NEED_KEY, { detail: e.message }));
    throw e;
  }
  return answer;
}

const RESULT_FIELDS = "domain status errorCode error icon { url }";

/** One page of a job's results through the cursor connection, with filters. */
export async function resultsPage(jobId, { first = 100, after = null, status = null, errorCode = null, domain = null, fields = RESULT_FIELDS }) {
  const data = await call(
    `query($jobId: ID!, $first: Int, $after: String, $status: ResultStatus, $errorCode: ErrorCategory, $domain: String) {
      resultsConnection(jobId: $jobId, first: $first, after: $after, status: $status, errorCode: $errorCode, domain: $domain) {
        edges { cursor node { ${fields} } }
        pageInfo { hasNextPage endCursor }
      }
    }`,
    { jobId, first, after, status, errorCode, domain },
  );
  const c = data.resultsConnection;
  return { nodes: c.edges.map((e) => e.node), next: c.pageInfo.hasNextPage ? c.pageInfo.endCursor : null };
}

/** Every domain of a job with `errorCode`, page by page (for "run these again"). */
export async function failedDomains(jobId, errorCode) {
  const domains = [];
  let after = null;
  do {
    const page = await resultsPage(jobId, { first: 500, after, status: "FAILED", errorCode, fields: "domain" });
    for (const n of page.nodes) domains.push(n.domain);
    after = page.next;
  } while (after);
  return domains;
}

/** Creates a job; resolves with its id. */
export async function createJob(domains, maxAgeSeconds) {
  const data = await call(
    `mutation($input: CreateJobInput!) { createJob(input: $input) { id } }`,
    { input: { clientId: clientArg(), domains, maxAgeSeconds } },
  );
  return data.createJob.id;
}

/**
 * The jobProgress subscription's selection. `cursor` is the event's place in the job's order
 * of finishing; subscribing with `after: cursor` starts with every domain finished since.
 */
export const PROGRESS = `subscription($jobId: ID!, $after: Int) {
  jobProgress(jobId: $jobId, after: $after) { jobId status total completed failed progress cursor results { domain status errorCode error icon { url } } }
}`;


let socket = null;
/** The page's one subscription socket (created on first use). */
export function live() {
  if (!socket) {
    socket = createClient({
      url: wsUrl("/graphql/ws"),
      params: wsParams,
      onState: (s) => document.documentElement.setAttribute("data-ws", s),
    });
  }
  return socket;
}

/**
 * Follows a job's progress: live events, or polling every 2 s when WebSockets are refused.
 * It starts after `after` (a finished count read earlier), or from the job's state; when the
 * socket comes back it resumes after the last event's cursor, so every domain that finished
 * meanwhile still arrives in an event; `onResume` is called first.
 */
export function followJob(jobId, { after = null, onEvent, onError = () => {}, onDone = () => {}, onResume = () => {} }) {
  let stopped = false;
  let poll = null;
  // The cursor of the last event; until the first, `after` (null: from the job's state).
  let cursor = after;
  let subscribed = false;
  const variables = () => {
    if (subscribed) onResume();
    subscribed = true;
    return cursor === null ? { jobId } : { jobId, after: cursor };
  };
  const unsubscribe = live().subscribe(PROGRESS, variables, {
    next: (payload) => {
      if (!payload.data) return onError(new ApiError(payload.errors || []));
      const p = payload.data.jobProgress;
      if (Number.isInteger(p.cursor)) cursor = p.cursor;
      onEvent(p);
    },
    error: (errors) => onError(new ApiError(Array.isArray(errors) ? errors : [errors])),
    complete: () => onDone(),
    refused: () => {
      // Only when the socket never opens: a proxy that refuses WebSockets.
      const tick = async () => {
        if (stopped) return;
        try {
          const data = await call(
            `query($id: ID!) { job(id: $id) { jobId: id status total completed failed progress } }`,
            { id: jobId },
          );
          onEvent({ ...data.job, results: [] });
          if (data.job.status !== "PROCESSING") return onDone();
        } catch (e) {
          onError(e);
        }
        poll = setTimeout(tick, 2000);
      };
      tick();
    },
  });
  return () => {
    stopped = true;
    clearTimeout(poll);
    unsubscribe();
  };
}
