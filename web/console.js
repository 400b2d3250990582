// The operations console, for admins: orders and their timelines,
// payments and refunds, products, stock, dead letters and the mailbox,
// topics and consumer lag, and the analytics charts. Drawn from the same
// public API as everything else; admin routes refuse anyone else.

import { announce, api, badge, explain, field, formError, h, heading, money, problemNotice, show, when } from "/static/common.js";

const page = document.getElementById("page");
let me = null;
let leave = () => {};

const SECTIONS = [
  ["orders", "Orders"],
  ["products", "Products"],
  ["inventory", "Inventory"],
  ["dead-letters", "Dead letters"],
  ["mailbox", "Mailbox"],
  ["topics", "Topics"],
  ["analytics", "Analytics"],
];

const say = announce;

function go(path) {
  history.pushState(null, "", path);
  route();
}

const title = (text) => heading(text, "Kart console");
const failure = problemNotice;

function table(headings, rows, caption) {
  return h("div", { class: "table-wrap" }, h("table", {},
    caption ? h("caption", { class: "skip" }, caption) : null,
    h("thead", {}, h("tr", {}, headings.map((x) => h("th", { class: x.startsWith("#") ? "num" : "" }, x.replace(/^#/, ""))))),
    h("tbody", {}, rows)));
}

function drawTabs(current) {
  show(document.getElementById("tabs"), SECTIONS.map(([slug, label]) =>
    h("a", { href: `/console/${slug}`, "data-link": true, "aria-current": slug === current ? "page" : false }, label)));
}

// ---- sign-in ------------------------------------------------------------

function signIn() {
  const form = h("form", {
    class: "card narrow",
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        const session = await api("POST", "/api/v1/auth/signin", Object.fromEntries(new FormData(form)));
        me = session.user;
        if (me.role !== "admin") {
          form.querySelector("[role=alert]").textContent = "This account is not an admin. The console needs an admin account.";
          return;
        }
        route();
      } catch (error) {
        formError(form, error);
      }
    },
  },
  field("Email", "email", { type: "email", required: true, autocomplete: "email" }),
  field("Password", "password", { type: "password", required: true, autocomplete: "current-password" }),
  h("div", { role: "alert" }),
  h("button", { type: "submit" }, "Sign in"));
  show(document.getElementById("tabs"));
  show(page, title("Sign in to the console"), form);
}

// ---- orders -------------------------------------------------------------

async function ordersSection(params) {
  const status = params.get("status") || "";
  let list;
  try {
    list = await api("GET", `/api/v1/admin/orders?limit=100${status ? `&status=${status}` : ""}`);
  } catch (error) {
    show(page, title("Orders"), failure(error));
    return;
  }
  const filter = h("select", {
    id: "status-filter", name: "status",
    onchange: (event) => go(`/console/orders${event.target.value ? `?status=${event.target.value}` : ""}`),
  }, ["", "PENDING", "RESERVED", "PAID", "FULFILLED", "CANCELLED", "FAILED"].map((s) =>
    h("option", { value: s, selected: s === status }, s || "Every status")));
  show(page, title("Orders"),
    h("div", { class: "field", style: "max-width:16rem" }, h("label", { for: "status-filter" }, "Status"), filter),
    table(["Order", "Placed", "Status", "#Total", "#Captured", "#Refunded"], list.orders.map((o) => h("tr", {},
      h("td", {}, h("a", { href: `/console/orders/${o.id}`, "data-link": true }, o.id)),
      h("td", {}, when(o.created_at)),
      h("td", {}, badge(o.status)),
      h("td", { class: "num" }, money(o.total)),
      h("td", { class: "num" }, money(o.captured)),
      h("td", { class: "num" }, money(o.refunded)))), "Orders"),
    list.orders.length ? null : h("p", {}, "No orders."));
}

async function orderSection(id) {
  let order;
  let mails = [];
  try {
    order = await api("GET", `/api/v1/orders/${encodeURIComponent(id)}`);
    const mailbox = await api("GET", `/api/v1/admin/mailbox?user_id=${encodeURIComponent(order.user_id)}&limit=500`);
    mails = mailbox.messages.filter((m) => m.order_id === id);
  } catch (error) {
    show(page, title(`Order ${id}`), failure(error));
    return;
  }
  // One timeline across services: the order's transitions (orders, with
  // inventory's and payments' causes) and the mails sent about it.
  const entries = [
    ...order.history.map((t) => ({ at: t.at, service: "orders", what: `${t.from || "—"} → ${t.to}`, detail: [t.cause, t.detail].filter(Boolean).join(": ") })),
    ...mails.map((m) => ({ at: m.sent_at || m.created_at, service: "notifications", what: `${m.kind} mail ${m.status}`, detail: m.subject })),
  ].sort((a, b) => String(a.at).localeCompare(String(b.at)));
  const act = async (path, body) => {
    try {
      await api("POST", path, body);
      say("Done.");
      route();
    } catch (error) {
      say(explain(error));
      show(page.querySelector("#order-actions-error"), explain(error));
    }
  };
  const refund = h("form", {
    class: "card narrow",
    onsubmit: (event) => {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(refund));
      act(`/api/v1/admin/orders/${id}/refund`, { amount_minor: Number(data.amount_minor), reason: data.reason });
    },
  }, h("h2", {}, "Refund"),
  field("Amount (minor units)", "amount_minor", { inputmode: "numeric", required: true }),
  field("Reason", "reason", { required: true }),
  h("button", { type: "submit" }, "Refund"));
  show(page,
    h("p", {}, h("a", { href: "/console/orders", "data-link": true }, "← Orders")),
    title(`Order ${id}`),
    h("p", {}, badge(order.status), ` · placed ${when(order.created_at)} by ${order.user_id}`),
    h("div", { class: "figures" },
      h("div", { class: "figure" }, "Total", h("strong", {}, money(order.total))),
      h("div", { class: "figure" }, "Captured", h("strong", {}, money(order.captured))),
      h("div", { class: "figure" }, "Refunded", h("strong", {}, money(order.refunded))),
      h("div", { class: "figure" }, "Payment", h("strong", {}, order.payment_kind))),
    order.failure_code ? h("div", { class: "notice bad" }, `Failed: ${order.failure_code}`) : null,
    h("h2", {}, "Timeline"),
    h("ol", { class: "timeline", "aria-label": "Timeline" }, entries.map((e) =>
      h("li", {}, h("strong", {}, e.what), ` · ${e.service} · ${when(e.at)}`, e.detail ? h("div", { class: "muted" }, e.detail) : null))),
    h("h2", {}, "Lines"),
    table(["SKU", "Name", "#Qty", "#Line total"], order.lines.map((l) => h("tr", {}, h("td", {}, l.sku), h("td", {}, l.name), h("td", { class: "num" }, l.quantity), h("td", { class: "num" }, money(l.line_total)))), "Lines"),
    h("div", { id: "order-actions-error", role: "alert" }),
    order.status === "PAID" ? h("p", {}, h("button", { type: "button", onclick: () => act(`/api/v1/admin/orders/${id}/fulfil`, {}) }, "Mark as shipped")) : null,
    order.captured.amount_minor > order.refunded.amount_minor ? refund : null);
}

// ---- products and inventory ---------------------------------------------

async function productsSection() {
  let list;
  try {
    list = await api("GET", "/api/v1/admin/products?limit=100&include_archived=true");
  } catch (error) {
    show(page, title("Products"), failure(error));
    return;
  }
  const form = h("form", {
    class: "card",
    onsubmit: async (event) => {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(form));
      const body = {
        sku: data.sku, name: data.name, description: data.description, category: data.category,
        price: { amount_minor: Number(data.price_minor), currency: data.currency },
      };
      try {
        await api("POST", "/api/v1/admin/products", body);
        say("Product created.");
        route();
      } catch (error) {
        if (error.field === "price.amount_minor") error.field = "price_minor";
        formError(form, error);
      }
    },
  }, h("h2", {}, "New product"),
  h("div", { class: "row" }, field("SKU", "sku", { required: true }), field("Name", "name", { required: true }), field("Category", "category", { required: true })),
  h("div", { class: "row" }, field("Price (minor units)", "price_minor", { inputmode: "numeric", required: true }), field("Currency", "currency", { value: "EUR", required: true })),
  field("Description", "description", {}),
  h("div", { role: "alert" }),
  h("button", { type: "submit" }, "Create"));
  const rows = list.products.map((p) => {
    const price = h("input", { value: p.price.amount_minor, inputmode: "numeric", "aria-label": `Price of ${p.sku} in minor units`, style: "max-width:8rem" });
    const save = async () => {
      try {
        await api("PATCH", `/api/v1/admin/products/${p.id}`, { price: { amount_minor: Number(price.value), currency: p.price.currency } });
        say(`${p.sku} saved.`);
        route();
      } catch (error) {
        say(explain(error));
        price.setAttribute("aria-invalid", "true");
      }
    };
    return h("tr", {},
      h("td", {}, p.sku), h("td", {}, p.name), h("td", {}, p.category),
      h("td", {}, price, " ", p.price.currency),
      h("td", {}, p.active ? "on sale" : "archived"),
      h("td", {},
        h("button", { type: "button", class: "secondary", onclick: save }, "Save"), " ",
        p.active ? h("button", { type: "button", class: "secondary", onclick: async () => { await api("DELETE", `/api/v1/admin/products/${p.id}`).catch((e) => say(explain(e))); route(); } }, "Archive") : null));
  });
  show(page, title("Products"), form, table(["SKU", "Name", "Category", "Price", "State", "Actions"], rows, "Products"));
}

async function inventorySection() {
  let products;
  try {
    products = (await api("GET", "/api/v1/admin/products?limit=100")).products;
  } catch (error) {
    show(page, title("Inventory"), failure(error));
    return;
  }
  const levels = await Promise.all(products.map((p) =>
    api("GET", `/api/v1/admin/stock/${encodeURIComponent(p.sku)}`).catch(() => ({ sku: p.sku, on_hand: 0, reserved: 0, available: 0 }))));
  const rows = levels.map((level) => {
    const delta = h("input", { inputmode: "numeric", "aria-label": `Units to add to ${level.sku} (negative to remove)`, style: "max-width:7rem", placeholder: "+10" });
    const form = h("form", {
      class: "row",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          await api("POST", `/api/v1/admin/stock/${encodeURIComponent(level.sku)}/adjustments`, { delta: Number(delta.value), reason: "adjusted in the console" });
          say(`${level.sku} adjusted.`);
          route();
        } catch (error) {
          delta.setAttribute("aria-invalid", "true");
          form.querySelector("[role=alert]").textContent = explain(error);
        }
      },
    }, delta, h("button", { type: "submit", class: "secondary" }, "Adjust"), h("span", { role: "alert" }));
    return h("tr", {}, h("td", {}, level.sku), h("td", { class: "num" }, level.on_hand), h("td", { class: "num" }, level.reserved), h("td", { class: "num" }, level.available), h("td", {}, form));
  });
  show(page, title("Inventory"), table(["SKU", "#On hand", "#Reserved", "#Available", "Adjust"], rows, "Stock levels"));
}

// ---- mail ---------------------------------------------------------------

function mailRows(messages, withReplay) {
  return messages.map((m) => h("tr", {},
    h("td", {}, h("a", { href: `/console/mailbox/${m.id}`, "data-link": true }, m.subject || m.kind)),
    h("td", {}, m.to || "—"),
    h("td", {}, badge(m.status)),
    h("td", { class: "num" }, m.attempts),
    h("td", {}, m.last_error || ""),
    h("td", {}, when(m.created_at)),
    withReplay ? h("td", {}, h("button", { type: "button", onclick: () => replay([m.id]), "aria-label": `Replay ${m.subject || m.id}` }, "Replay")) : null));
}

async function replay(ids) {
  try {
    const result = await api("POST", "/api/v1/admin/dead-letters/replay", ids ? { ids } : { all: true });
    const said = result.outcomes.map((o) => `${o.id}: ${o.outcome.replace("_", " ")}`).join("; ");
    say(said || "Nothing to replay.");
    await route();
    show(document.getElementById("replayed"), said || "Nothing to replay.");
  } catch (error) {
    say(explain(error));
  }
}

async function deadLettersSection() {
  let list;
  try {
    list = await api("GET", "/api/v1/admin/dead-letters?limit=200");
  } catch (error) {
    show(page, title("Dead letters"), failure(error));
    return;
  }
  show(page, title("Dead letters"),
    h("p", {}, "Messages that could not be delivered after their last try. A replay sends one again with a fresh set of tries; one that was delivered meanwhile is not sent twice."),
    h("div", { id: "replayed", class: "notice", role: "status" }),
    list.messages.length
      ? [h("p", {}, h("button", { type: "button", class: "secondary", onclick: () => replay(null) }, "Replay all")),
        table(["Message", "To", "Status", "#Tries", "Last error", "Created", "Replay"], mailRows(list.messages, true), "Dead letters")]
      : h("p", {}, "No dead letters."));
}

async function mailboxSection() {
  let list;
  try {
    list = await api("GET", "/api/v1/admin/mailbox?limit=200");
  } catch (error) {
    show(page, title("Mailbox"), failure(error));
    return;
  }
  show(page, title("Mailbox"),
    list.messages.length
      ? table(["Message", "To", "Status", "#Tries", "Last error", "Created"], mailRows(list.messages, false), "Mailbox")
      : h("p", {}, "No messages yet."));
}

async function messageSection(id) {
  let message;
  try {
    message = await api("GET", `/api/v1/admin/mailbox/${encodeURIComponent(id)}`);
  } catch (error) {
    show(page, title("Message"), failure(error));
    return;
  }
  show(page,
    h("p", {}, h("a", { href: "/console/mailbox", "data-link": true }, "← Mailbox")),
    title(message.subject || message.kind),
    h("p", {}, badge(message.status), ` · to ${message.to || "—"} · ${message.kind} · from ${message.source_event_type}`),
    message.order_id ? h("p", {}, h("a", { href: `/console/orders/${message.order_id}`, "data-link": true }, `Order ${message.order_id}`)) : null,
    message.status === "dead" ? h("p", {}, h("button", { type: "button", onclick: () => replay([message.id]) }, "Replay")) : null,
    h("h2", {}, "As sent (HTML)"),
    // Sandboxed: the mail's HTML runs no script and reaches nothing.
    message.html_body ? h("iframe", { class: "mail", sandbox: "", srcdoc: message.html_body, title: "The message as HTML" }) : h("p", {}, "Not written yet."),
    h("h2", {}, "Plain text"),
    h("pre", { style: "white-space:pre-wrap" }, message.text_body),
    h("h2", {}, "Delivery tries"),
    table(["#Try", "At", "Outcome", "Error"], message.delivery_attempts.map((a) =>
      h("tr", {}, h("td", { class: "num" }, a.attempt), h("td", {}, when(a.at)), h("td", {}, badge(a.outcome)), h("td", {}, a.error || ""))), "Delivery tries"));
}

// ---- topics -------------------------------------------------------------

async function topicsSection() {
  let bus;
  try {
    bus = await api("GET", "/api/v1/admin/topics");
  } catch (error) {
    show(page, title("Topics"), failure(error));
    return;
  }
  const groups = new Map();
  for (const g of bus.groups) {
    const key = `${g.service}/${g.group}/${g.topic}`;
    const entry = groups.get(key) || { ...g, lag: 0, partitions: [] };
    entry.lag += g.lag;
    entry.partitions.push(`${g.partition}: ${g.position}`);
    groups.set(key, entry);
  }
  show(page, title("Topics"),
    h("p", {}, `Bus: ${bus.bus}.`),
    bus.unreachable.length ? h("div", { class: "notice bad" }, `Not answering: ${bus.unreachable.join(", ")}`) : null,
    table(["Topic", "Partition ends", "#Records"], bus.topics.map((t) => h("tr", {},
      h("td", {}, t.name),
      h("td", {}, t.partitions.map((p) => `${p.partition}: ${p.end}`).join(", ")),
      h("td", { class: "num" }, t.partitions.reduce((n, p) => n + p.end, 0)))), "Topics"),
    h("h2", {}, "Consumer groups"),
    table(["Service", "Group", "Topic", "Positions", "#Lag"], [...groups.values()].map((g) => h("tr", {},
      h("td", {}, g.service), h("td", {}, g.group), h("td", {}, g.topic), h("td", {}, g.partitions.join(", ")), h("td", { class: "num" }, g.lag))), "Consumer groups"));
}

// ---- analytics ----------------------------------------------------------

/** A small line chart: one or more series over the minutes. */
function chart(label, minutes, series, format = (v) => String(v)) {
  const width = 480;
  const height = 180;
  const pad = 32;
  const xs = minutes.map((m) => new Date(m.minute).getTime());
  const all = series.flatMap((s) => minutes.map(s.value));
  const max = Math.max(1, ...all);
  const x0 = Math.min(...xs);
  const x1 = Math.max(x0 + 60000, ...xs);
  const px = (x) => pad + ((x - x0) / (x1 - x0)) * (width - 2 * pad);
  const py = (y) => height - pad - (y / max) * (height - 2 * pad);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  const last = minutes.length ? series.map((s) => `${s.name} ${format(s.value(minutes[minutes.length - 1]))}`).join(", ") : "no data";
  svg.setAttribute("aria-label", `${label}: ${minutes.length} minutes; latest ${last}`);
  const add = (tag, attributes) => {
    const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, v);
    svg.append(element);
    return element;
  };
  add("line", { x1: pad, y1: height - pad, x2: width - pad, y2: height - pad, stroke: "#8a909c" });
  add("line", { x1: pad, y1: pad, x2: pad, y2: height - pad, stroke: "#8a909c" });
  add("text", { x: 2, y: pad, "font-size": 11, fill: "#4b5260" }).textContent = format(max);
  add("text", { x: 2, y: height - pad, "font-size": 11, fill: "#4b5260" }).textContent = "0";
  const colours = ["#0b5cad", "#1d6b35", "#a4211b"];
  series.forEach((s, i) => {
    const points = minutes.map((m) => `${px(new Date(m.minute).getTime()).toFixed(1)},${py(s.value(m)).toFixed(1)}`).join(" ");
    add("polyline", { points, fill: "none", stroke: colours[i % 3], "stroke-width": 2 });
    for (const m of minutes) add("circle", { cx: px(new Date(m.minute).getTime()), cy: py(s.value(m)), r: 2.5, fill: colours[i % 3] });
    add("text", { x: width - pad - 120, y: 14 + i * 14, "font-size": 12, fill: colours[i % 3] }).textContent = s.name;
  });
  return h("figure", { class: "chart" }, h("figcaption", {}, h("strong", {}, label)), svg);
}

async function analyticsSection(params) {
  const minutes = params.get("minutes") || "60";
  let stats;
  try {
    stats = await api("GET", `/api/v1/admin/stats?minutes=${encodeURIComponent(minutes)}`);
  } catch (error) {
    show(page, title("Analytics"), failure(error));
    return;
  }
  const revenue = (m) => (m.revenue[0] ? m.revenue[0].amount_minor / 100 : 0);
  const currency = stats.currencies[0]?.currency || "";
  const rate = stats.payment_success_rate === null || stats.payment_success_rate === undefined ? "—" : `${(stats.payment_success_rate * 100).toFixed(1)} %`;
  const rebuild = h("button", {
    type: "button", class: "secondary",
    onclick: async () => {
      try {
        const started = await api("POST", "/api/v1/admin/analytics/rebuild", {});
        say(`Rebuilding from ${started.records_to_replay} records.`);
      } catch (error) {
        say(explain(error));
      }
    },
  }, "Rebuild from the topics");
  show(page, title("Analytics"),
    h("p", { class: "muted" }, `The last ${minutes} minutes. `, rebuild),
    h("div", { class: "figures" },
      h("div", { class: "figure" }, "Orders created", h("strong", {}, stats.orders_created)),
      h("div", { class: "figure" }, "Paid", h("strong", {}, stats.orders_paid)),
      h("div", { class: "figure" }, "Failed", h("strong", {}, stats.orders_failed)),
      h("div", { class: "figure" }, "Payment success", h("strong", {}, rate)),
      stats.currencies.map((c) => h("div", { class: "figure" }, `Revenue ${c.currency}`, h("strong", {}, money({ amount_minor: c.revenue_minor, currency: c.currency })),
        h("span", { class: "muted" }, `average ${money({ amount_minor: c.average_order_minor, currency: c.currency })}`))),
      h("div", { class: "figure" }, "Order → paid p50 / p95 / p99", h("strong", {}, `${stats.order_to_paid.p50_ms} / ${stats.order_to_paid.p95_ms} / ${stats.order_to_paid.p99_ms} ms`))),
    h("div", { class: "charts" },
      chart("Orders per minute", stats.minutes, [
        { name: "created", value: (m) => m.orders_created },
        { name: "paid", value: (m) => m.orders_paid },
        { name: "failed", value: (m) => m.orders_failed },
      ]),
      chart(`Revenue per minute ${currency}`, stats.minutes, [{ name: "revenue", value: revenue }], (v) => Number(v).toFixed(2)),
      chart("Payment success rate", stats.minutes, [{
        name: "success",
        value: (m) => (m.payments_captured + m.payments_failed ? m.payments_captured / (m.payments_captured + m.payments_failed) : 0),
      }], (v) => `${Math.round(v * 100)} %`),
      chart("Order → paid (ms)", stats.minutes, [
        { name: "p50", value: (m) => m.order_to_paid.p50_ms },
        { name: "p95", value: (m) => m.order_to_paid.p95_ms },
        { name: "p99", value: (m) => m.order_to_paid.p99_ms },
      ])),
    h("h2", {}, "Top products"),
    table(["SKU", "#Units", "#Revenue"], stats.top_products.map((p) => h("tr", {}, h("td", {}, p.sku), h("td", { class: "num" }, p.units), h("td", { class: "num" }, money(p.revenue)))), "Top products"));
  const timer = setInterval(() => {
    if (!document.hidden) analyticsSection(params);
  }, 15000);
  leave = () => clearInterval(timer);
}

// ---- routing ------------------------------------------------------------

async function route() {
  leave();
  leave = () => {};
  if (!me) {
    try {
      me = await api("GET", "/api/v1/me");
    } catch {
      me = null;
    }
  }
  show(document.getElementById("session"), me ? h("span", { class: "muted" }, me.email) : null);
  if (!me || me.role !== "admin") return signIn();
  const params = new URLSearchParams(location.search);
  const parts = location.pathname.replace(/^\/console\/?/, "").split("/").filter(Boolean);
  const section = parts[0] || "orders";
  drawTabs(section);
  switch (section) {
    case "orders":
      return parts[1] ? orderSection(decodeURIComponent(parts[1])) : ordersSection(params);
    case "products":
      return productsSection();
    case "inventory":
      return inventorySection();
    case "dead-letters":
      return deadLettersSection();
    case "mailbox":
      return parts[1] ? messageSection(decodeURIComponent(parts[1])) : mailboxSection();
    case "topics":
      return topicsSection();
    case "analytics":
      return analyticsSection(params);
    default:
      show(page, title("Not found"), h("p", {}, "No such section."));
  }
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
  event.preventDefault();
  go(link.getAttribute("href"));
});
window.addEventListener("popstate", route);
route();
