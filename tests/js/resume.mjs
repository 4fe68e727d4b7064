// Follows one job's jobProgress with the npm graphql-ws client, as a user with retries would,
// and prints what it heard as one JSON line: every domain named, the last event, how often the
// socket closed. Usage: node resume.mjs <ws-url> <job-id>
//
// The client resends the same payload object on every reconnect, so keeping the last event's
// cursor in `variables.after` makes each resubscription resume where the last one stopped.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, jobId] = process.argv.slice(2);
const query = `subscription($jobId: ID!, $after: Int) {
  jobProgress(jobId: $jobId, after: $after) { status total completed failed cursor results { domain status } }
}`;
// From the start (0), so domains that finished before the client came are named too.
const variables = { jobId, after: 0 };
let closes = 0;
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  retryAttempts: 20,
  retryWait: () => new Promise((resolve) => setTimeout(resolve, 200)),
  shouldRetry: () => true,
  on: { closed: () => { closes += 1; } },
});
const named = new Set();
let last = null;
const errors = [];
const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: "timed out", named: [...named], last, closes, errors }));
  process.exit(2);
}, 60_000);
client.subscribe({ query, variables }, {
  next(payload) {
    if (payload.errors) errors.push(...payload.errors);
    const event = payload.data && payload.data.jobProgress;
    if (!event) return;
    for (const result of event.results) named.add(result.domain);
    variables.after = event.cursor;
    last = event;
  },
  error(error) {
    errors.push(String(error && (error.reason || error.message) || error));
    finish(1);
  },
  complete() {
    finish(0);
  },
});

function finish(code) {
  clearTimeout(timer);
  console.log(JSON.stringify({ named: [...named], last, closes, errors }));
  client.dispose();
  process.exit(code);
}
