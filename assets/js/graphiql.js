// The GraphiQL page's setup: queries and mutations over fetch to /graphql, subscriptions
// over graphql-transport-ws at /graphql/ws through the dashboard's own client, and the
// dashboard's API key (sessionStorage) sent with both. Module scripts run after the
// deferred classic scripts, so React and GraphiQL are loaded by now.

import { apiKey, wsParams } from "./api.js";
import { createClient, wsUrl } from "./ws.js";

const socket = createClient({ url: wsUrl("/graphql/ws"), params: wsParams });

function isSubscription(params) {
  const text = params.query || "";
  const op = params.operationName;
  const pattern = op ? new RegExp(`subscription\\s+${op}\\b`) : /^\s*subscription\b/m;
  return pattern.test(text);
}

/** GraphiQL's fetcher: a promise for queries, an async iterable for subscriptions. */
function fetcher(params, options) {
  if (isSubscription(params)) return subscribe(params);
  const headers = { "Content-Type": "application/json", ...(options?.headers || {}) };
  if (apiKey() && !headers.Authorization) headers.Authorization = `Bearer ${apiKey()}`;
  return fetch("/graphql", { method: "POST", headers, body: JSON.stringify(params) }).then((r) => r.json());
}

function subscribe(params) {
  const queue = [];
  let wake = null;
  let finished = false;
  const push = (item) => {
    queue.push(item);
    if (wake) wake();
  };
  const stop = socket.subscribe(params.query, params.variables || {}, {
    next: (payload) => push({ value: payload }),
    error: (errors) => push({ value: { errors: Array.isArray(errors) ? errors : [errors] }, last: true }),
    complete: () => push({ last: true }),
    refused: () => push({ value: { errors: [{ message: "WebSockets are refused: subscriptions cannot run here" }] }, last: true }),
  });
  return {
    [Symbol.asyncIterator]() {
      return {
        async next() {
          while (!queue.length && !finished) await new Promise((resolve) => (wake = resolve));
          const item = queue.shift();
          if (!item) return { done: true, value: undefined };
          if (item.last) finished = true;
          if (item.value === undefined) return { done: true, value: undefined };
          return { done: false, value: item.value };
        },
        async return() {
          finished = true;
          stop();
          return { done: true, value: undefined };
        },
      };
    },
  };
}

const root = ReactDOM.createRoot(document.getElementById("graphiql"));
root.render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultQuery: "# Jobs of the dashboard's client, newest first.\n{\n  jobs(clientId: \"dashboard\") {\n    total\n    jobs { id status progress total }\n  }\n}\n",
  }),
);
