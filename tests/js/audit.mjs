// The GraphQL-over-HTTP spec's own audit suite (graphql-http's auditServer) against one
// server: `node audit.mjs http://127.0.0.1:PORT/graphql [API key]`.
// Prints one JSON line per audit ({id, name, status, reason}) and a summary line; exits 1
// when any audit is an error (a MUST) or a warning (a SHOULD). A failed MAY is a notice,
// printed and counted, and left to the caller to judge.
import { auditServer } from 'graphql-http';

const [url, key] = process.argv.slice(2);
if (!url) {
  console.error('usage: node audit.mjs URL [API_KEY]');
  process.exit(2);
}

// With a key every request carries it, as a real client's would.
const fetchFn = key
  ? (input, init = {}) => {
      const headers = new Headers(init.headers);
      headers.set('authorization', `Bearer ${key}`);
      return fetch(input, { ...init, headers });
    }
  : fetch;

const results = await auditServer({ url, fetchFn });
const counts = { ok: 0, notice: 0, warn: 0, error: 0 };
for (const result of results) {
  counts[result.status] = (counts[result.status] ?? 0) + 1;
  const line = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    line.reason = result.reason;
    // The answer the audit judged, so a failure says what the server sent.
    if (result.response) {
      line.response = {
        status: result.response.status,
        contentType: result.response.headers.get('content-type'),
        // The audit may have read the body already.
        body: await result.response.text().then(
          (text) => text.slice(0, 500),
          () => '(read by the audit)',
        ),
      };
    }
  }
  console.log(JSON.stringify(line));
}
console.log(JSON.stringify({ summary: counts, total: results.length }));
process.exit(counts.warn || counts.error ? 1 : 0);
