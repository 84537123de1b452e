// The page's only way to the service: the public /v1 API, same origin. An API key (when the service has keys)
// is asked for once and kept in sessionStorage, for this tab only.

const KEY_STORE = "digitae.apiKey";

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let askForKey = null; // set by the page: (message) => Promise<string|null>
let pendingKey = null;

export function onKeyNeeded(callback) {
  askForKey = callback;
}

function headers(extra) {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function send(path, init, retried = false) {
  let response;
  try {
    response = await fetch(path, { ...init, headers: headers(init.headers || {}) });
  } catch (err) {
    throw new ApiError(0, `the service cannot be reached (${err.message})`, "network");
  }
  if (response.ok) return response.json();
  let message = `${response.status} ${response.statusText}`;
  let code = "";
  try {
    const body = await response.json();
    if (body && body.error) ({ message, code } = body.error);
  } catch {
    /* not JSON: keep the status line */
  }
  if (response.status === 401 && askForKey && !retried) {
    // several panels may be refused at once: they all wait for the one dialog
    pendingKey = pendingKey || askForKey(message).finally(() => (pendingKey = null));
    const key = await pendingKey;
    if (key) {
      sessionStorage.setItem(KEY_STORE, key);
      return send(path, init, true);
    }
  }
  throw new ApiError(response.status, message, code);
}

export function getJson(path) {
  return send(path, { method: "GET", headers: { Accept: "application/json" } });
}

export function postJson(path, body) {
  return send(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
}

export function postFile(path, file) {
  const form = new FormData();
  form.append("file", file, file.name || "image");
  return send(path, { method: "POST", headers: { Accept: "application/json" }, body: form });
}

/** base64 PNG (as the API returns it) -> something an <img> shows. */
export const pngUrl = (b64) => `data:image/png;base64,${b64}`;

/**
 * One request in flight per panel, and the latest input wins: while a call runs, newer calls replace each
 * other in a single waiting slot, so dragging a slider never builds a queue of stale requests.
 */
export class Latest {
  constructor(onError) {
    this.onError = onError;
    this.running = false;
    this.waiting = null;
  }

  run(task) {
    if (this.running) {
      this.waiting = task;
      return;
    }
    this.running = true;
    Promise.resolve()
      .then(task)
      .catch((err) => this.onError(err))
      .finally(() => {
        this.running = false;
        const next = this.waiting;
        this.waiting = null;
        if (next) this.run(next);
      });
  }
}
