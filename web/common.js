// What the storefront and the console share: calling the API with the
// session cookie, turning problems into sentences, formatting money,
// building DOM safely (text is always set as text, never as HTML).

/** An API error: the RFC 9457 problem the gateway answered. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || "error";
    this.field = problem.field || null;
  }
}

let refreshing = null;

/** Renews the session from the refresh cookie, once for every waiting call. */
async function refresh() {
  if (!refreshing) {
    refreshing = fetch("/api/v1/auth/refresh", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    })
      .then((r) => r.ok)
      .finally(() => setTimeout(() => (refreshing = null), 0));
  }
  return refreshing;
}

/**
 * Calls the API. Sends and reads JSON; on 401 renews the session once and
 * tries again; throws ApiError with the problem the API gave.
 */
export async function api(method, path, body, headers = {}) {
  const send = () =>
    fetch(path, {
      method,
      headers: {
        accept: "application/json",
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  let response;
  try {
    response = await send();
    if (response.status === 401 && !path.startsWith("/api/v1/auth/") && (await refresh())) {
      response = await send();
    }
  } catch {
    throw new ApiError(0, {
      code: "network",
      detail: "Kart cannot be reached. Check your connection and try again.",
    });
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, json || { detail: `The server answered ${response.status}.` });
  }
  return json;
}

/** A problem as a person can act on it. */
export function explain(error) {
  if (!(error instanceof ApiError)) return "Something went wrong. Please try again.";
  switch (error.code) {
    case "unauthenticated":
      return "Please sign in to continue.";
    case "forbidden":
      return "This needs an admin account.";
    case "rate_limited":
      return "Too many requests at once. Wait a moment and try again.";
    case "unavailable":
    case "upstream_unavailable":
      return "Part of the shop is briefly unavailable. Try again in a moment.";
    default:
      return error.message;
  }
}

const DIGITS = { JPY: 0, KRW: 0, VND: 0, CLP: 0, ISK: 0, KWD: 3, BHD: 3, JOD: 3, OMR: 3, TND: 3 };

/** Integer minor units and a currency, as a person reads them. */
export function money(amount) {
  if (!amount) return "";
  const digits = DIGITS[amount.currency] ?? 2;
  const value = amount.amount_minor / 10 ** digits;
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: amount.currency }).format(value);
  } catch {
    return `${value.toFixed(digits)} ${amount.currency}`;
  }
}

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/**
 * Builds an element: h("a", {href: "/"}, "text", child…). Attributes
 * starting with "on" are listeners; strings become text nodes.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** Replaces what `parent` shows. */
export function show(parent, ...children) {
  parent.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

/**
 * A form's error area: says what went wrong and marks the field at fault
 * (aria-invalid, focus) so keyboard and screen-reader users land on it.
 */
export function formError(form, error) {
  const alert = form.querySelector("[role=alert]");
  for (const field of form.querySelectorAll("[aria-invalid]")) field.removeAttribute("aria-invalid");
  if (!error) {
    if (alert) alert.textContent = "";
    return;
  }
  if (alert) alert.textContent = explain(error);
  const name = error.field ? error.field.replace(/\[\d+\].*$/, "").split(".")[0] : null;
  const field = name && form.querySelector(`[name="${CSS.escape(name)}"]`);
  if (field) {
    field.setAttribute("aria-invalid", "true");
    field.focus();
  }
}

/** Says `text` to screen readers (the page's `#announcer` live region). */
export function announce(text) {
  const announcer = document.getElementById("announcer");
  if (!announcer) return;
  announcer.textContent = "";
  setTimeout(() => (announcer.textContent = text), 50);
}

/** The page's heading, and the window title to match. */
export function heading(text, site) {
  document.title = `${text} · ${site}`;
  return h("h1", {}, text);
}

/** A problem from the API, as an alert block. */
export function problemNotice(error) {
  return h("div", { class: "notice bad", role: "alert" }, explain(error));
}

/** A labelled input. */
export function field(label, name, attributes = {}) {
  const id = `f-${name}-${Math.random().toString(36).slice(2, 7)}`;
  return h("div", { class: "field" }, h("label", { for: id }, label), h("input", { id, name, ...attributes }));
}

/** Status as a badge, readable without colour. */
export function badge(status) {
  return h("span", { class: `badge badge-${String(status).toLowerCase()}` }, status);
}

/** A new idempotency key. */
export function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}
