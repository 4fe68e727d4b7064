// A small graphql-transport-ws client (the protocol async-graphql speaks at /graphql/ws),
// shared by the dashboard and the GraphiQL page. One socket carries every subscription; it
// reconnects with exponential backoff and resubscribes, closes while the tab is hidden and
// reopens when it is shown, and reports "refused" when WebSockets never open at all, so the
// caller can fall back to polling. A subscription's variables may be a function, asked each
// time it is (re)subscribed, so a caller can resume where its last event left it.

const PROTOCOL = "graphql-transport-ws";
const MIN_DELAY = 500;
const MAX_DELAY = 30_000;
// Failed attempts without ever opening before the socket counts as refused.
const REFUSED_AFTER = 3;

let nextId = 1;

/** Creates a client; `params()` gives the connection_init payload (the API key). */
export function createClient({ url, params = () => ({}), onState = () => {} }) {
  const subs = new Map();
  let socket = null;
  let acked = false;
  let everOpened = false;
  let failures = 0;
  let timer = null;
  let paused = document.visibilityState === "hidden";

  function state(name) {
    onState(name);
  }

  function send(message) {
    if (socket && acked) socket.send(JSON.stringify(message));
  }

  function subscribeMessage(id, sub) {
    const variables = typeof sub.variables === "function" ? sub.variables() : sub.variables;
    return { id, type: "subscribe", payload: { query: sub.query, variables } };
  }

  function connect() {
    clearTimeout(timer);
    timer = null;
    if (socket || paused || subs.size === 0) return;
    acked = false;
    const ws = new WebSocket(url, PROTOCOL);
    socket = ws;
    state("connecting");
    ws.onopen = () => {
      everOpened = true;
      ws.send(JSON.stringify({ type: "connection_init", payload: params() }));
    };
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      const sub = subs.get(message.id);
      switch (message.type) {
        case "connection_ack":
          acked = true;
          failures = 0;
          state("open");
          for (const [id, s] of subs) ws.send(JSON.stringify(subscribeMessage(id, s)));
          break;
        case "ping":
          ws.send(JSON.stringify({ type: "pong" }));
          break;
        case "next":
          if (sub) sub.sink.next(message.payload);
          break;
        case "error":
          if (sub) {
            subs.delete(message.id);
            sub.sink.error(message.payload);
          }
          break;
        case "complete":
          if (sub) {
            subs.delete(message.id);
            sub.sink.complete();
          }
          break;
      }
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      socket = null;
      acked = false;
      // 4403 (refused key) and 4400 (bad request) will not get better by retrying.
      if (event.code === 4403 || event.code === 4400 || event.code === 4401) {
        for (const [id, s] of subs) {
          subs.delete(id);
          s.sink.error([{ message: event.reason || "the server refused the connection", extensions: { code: event.code === 4403 ? "UNAUTHORIZED" : "BAD_REQUEST" } }]);
        }
        state("closed");
        return;
      }
      if (paused || subs.size === 0) {
        state("paused");
        return;
      }
      failures += 1;
      if (!everOpened && failures >= REFUSED_AFTER) {
        state("refused");
        for (const [id, s] of subs) {
          subs.delete(id);
          s.sink.refused?.();
        }
        return;
      }
      const base = Math.min(MAX_DELAY, MIN_DELAY * 2 ** (failures - 1));
      const delay = base / 2 + Math.random() * (base / 2);
      state("reconnecting");
      timer = setTimeout(connect, delay);
    };
  }

  document.addEventListener("visibilitychange", () => {
    paused = document.visibilityState === "hidden";
    if (paused) {
      // Nothing to draw while hidden: give the connection (and the server's slot) back.
      // Resubscribing asks the variables again, so a subscriber that resumes from its last
      // event misses nothing.
      if (socket) {
        const ws = socket;
        socket = null;
        acked = false;
        ws.close(1000, "hidden");
        state("paused");
      }
    } else {
      connect();
    }
  });

  return {
    /**
     * Subscribes; `variables` is an object or a function giving them at each (re)subscribe;
     * `sink` has next(payload), error(errors), complete() and optionally refused()
     * (WebSockets never open: poll instead). Returns the unsubscribe function.
     */
    subscribe(query, variables, sink) {
      const id = String(nextId++);
      const sub = { query, variables, sink };
      subs.set(id, sub);
      if (socket && acked) send(subscribeMessage(id, sub));
      else connect();
      return () => {
        if (subs.delete(id)) send({ id, type: "complete" });
        if (subs.size === 0 && socket) {
          const ws = socket;
          socket = null;
          ws.close(1000, "done");
          state("idle");
        }
      };
    },
    /** Whether the socket is up and acknowledged. */
    get open() {
      return acked;
    },
  };
}

/** The WebSocket URL of a path on this origin. */
export function wsUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}
