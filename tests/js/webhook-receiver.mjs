// A webhook endpoint for the Rust tests (tests/common/webhooks.rs): it checks every request with
// the npm `standardwebhooks` library, unchanged, as a real consumer would, so a signature the
// service gets wrong fails here and not only against the service's own idea of the scheme.
//
// Usage: node webhook-receiver.mjs [secrets-json] [statuses-json]
//   secrets:  ["whsec_...", ...] (or WEBHOOK_SECRETS); each is tried on its own, and a request
//             records the indices of those that verified it, so a wrong secret shows as [].
//   statuses: [500, 500] (or WEBHOOK_STATUSES): the answers to the first requests in turn;
//             every request after them gets 204.
//
// Listens on 127.0.0.1, port 0. Stdout carries one JSON object per line: first
// {"listening": port}, then one per request ({path, method, headers, body, verified_with,
// verify_errors, status_answered, received_at_ms}), printed before the answer is sent. Stdin
// takes one JSON object per line to change the settings while running: any of
// {"secrets": [...], "statuses": [...], "delay_ms": n}; each line is acknowledged with
// {"configured": k}, k counting lines from 1, after which every new request uses it. The
// process exits when stdin closes, so it never outlives the test that started it.
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { Webhook } from "standardwebhooks";

const fromArg = (arg, env, fallback) => JSON.parse(arg ?? process.env[env] ?? fallback);
let secrets = fromArg(process.argv[2], "WEBHOOK_SECRETS", "[]");
let statuses = fromArg(process.argv[3], "WEBHOOK_STATUSES", "[]");
// How long each answer waits after the request is read, for the service's timeout.
let delayMs = 0;
let configured = 0;

const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

// The indices of the secrets that verify this request, and why each other one did not.
function verify(body, headers) {
  const verifiedWith = [];
  const errors = [];
  secrets.forEach((secret, index) => {
    try {
      new Webhook(secret).verify(body, headers);
      verifiedWith.push(index);
    } catch (error) {
      errors.push(`${index}: ${error.message}`);
    }
  });
  return { verifiedWith, errors };
}

const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const received = Date.now();
    const raw = Buffer.concat(chunks);
    const post = req.method === "POST";
    // Only POSTs take a status from the list: a stray request must not shift the plan.
    const status = post ? (statuses.shift() ?? 204) : 405;
    const { verifiedWith, errors } = verify(raw, req.headers);
    print({
      path: req.url,
      method: req.method,
      headers: req.headers,
      body: raw.toString("utf8"),
      verified_with: verifiedWith,
      verify_errors: errors,
      status_answered: status,
      received_at_ms: received,
    });
    setTimeout(() => res.writeHead(status).end(), delayMs);
  });
});

server.listen(0, "127.0.0.1", () => print({ listening: server.address().port }));

const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
  const change = JSON.parse(line);
  if (change.secrets !== undefined) secrets = change.secrets;
  if (change.statuses !== undefined) statuses = change.statuses;
  if (change.delay_ms !== undefined) delayMs = change.delay_ms;
  configured += 1;
  print({ configured });
});
input.on("close", () => process.exit(0));
