// The storefront: catalog and search, product pages, a cart kept in this
// browser, accounts and saved cards, checkout, and orders whose status
// changes live (server-sent events). Every page is drawn here from the
// public API; the gateway serves the same shell for each address, so links
// (and the order links in emails) work when opened directly.

import { announce, api, badge, explain, field, formError, h, heading, money, newKey, problemNotice, show, when } from "/static/common.js";

const main = document.getElementById("main");
let me = null;
/** Undoes what the current page set up (a live stream, timers). */
let leave = () => {};
/** The search waiting for the shopper to stop typing. */
let typing;
/** Moves on every navigation: a page whose answer arrives after the
 * shopper moved on (a slower search for fewer letters) draws nothing. */
let generation = 0;

// ---- cart ---------------------------------------------------------------

const CART = "kart.cart";

function cart() {
  try {
    const items = JSON.parse(localStorage.getItem(CART) || "[]");
    return Array.isArray(items) ? items : [];
  } catch {
    return [];
  }
}

function saveCart(items) {
  localStorage.setItem(CART, JSON.stringify(items));
  // A changed cart is a new order: a new idempotency key.
  sessionStorage.removeItem("kart.checkout-key");
  drawCartLink();
}

function addToCart(product, quantity) {
  const items = cart();
  const line = items.find((i) => i.sku === product.sku);
  if (line) line.quantity = Math.min(999, line.quantity + quantity);
  else items.push({ product_id: product.id, sku: product.sku, name: product.name, price: product.price, quantity });
  saveCart(items);
  say(`${product.name} added to your cart.`);
}

function drawCartLink() {
  const count = cart().reduce((n, i) => n + i.quantity, 0);
  document.getElementById("cart-link").textContent = count ? `Cart (${count})` : "Cart";
}

// ---- plumbing -----------------------------------------------------------

const say = announce;

function go(path) {
  // A search still waiting to run must not take the shopper back.
  clearTimeout(typing);
  history.pushState(null, "", path);
  route();
}

const title = (text) => heading(text, "Kart");
const failure = problemNotice;

async function loadMe() {
  try {
    me = await api("GET", "/api/v1/me");
  } catch {
    me = null;
  }
  drawSession();
}

function drawSession() {
  const slot = document.getElementById("session");
  if (me) {
    show(
      slot,
      h("span", { class: "muted hide-narrow" }, me.display_name || me.email),
      me.role === "admin" ? h("a", { href: "/console" }, " Console") : null,
    );
  } else {
    show(slot, h("a", { href: "/signin", "data-link": true }, "Sign in"));
  }
}

function needSession(next) {
  show(
    main,
    title("Please sign in"),
    h(
      "p",
      {},
      h("a", { href: `/signin?next=${encodeURIComponent(next)}`, "data-link": true }, "Sign in"),
      " or ",
      h("a", { href: `/signup?next=${encodeURIComponent(next)}`, "data-link": true }, "create an account"),
      " to continue.",
    ),
  );
}

// ---- catalog ------------------------------------------------------------

function productCard(product) {
  return h(
    "li",
    { class: "product" },
    h("img", { src: product.image_url, alt: "", loading: "lazy", width: 320, height: 240 }),
    h(
      "div",
      { class: "body" },
      h("h3", {}, h("a", { href: `/products/${product.id}`, "data-link": true }, product.name)),
      h("span", { class: "muted" }, product.category),
      h("span", { class: "price" }, money(product.price)),
      h("button", { type: "button", onclick: () => addToCart(product, 1), "aria-label": `Add ${product.name} to cart` }, "Add to cart"),
    ),
  );
}

async function catalog(params) {
  const mine = generation;
  const q = (params.get("q") || "").trim();
  const category = params.get("category") || "";
  document.getElementById("search").value = q;
  let products;
  let facets;
  try {
    if (q) {
      const query = new URLSearchParams({ q, limit: "60" });
      if (category) query.set("category", category);
      const found = await api("GET", `/api/v1/products/search?${query}`);
      products = found.hits.map((hit) => hit.product);
      facets = found.facets;
    } else {
      const page = await api("GET", `/api/v1/products?limit=100${category ? `&category=${encodeURIComponent(category)}` : ""}`);
      products = page.products;
      const all = category ? (await api("GET", "/api/v1/products?limit=100")).products : products;
      const counts = new Map();
      for (const p of all) counts.set(p.category, (counts.get(p.category) || 0) + 1);
      facets = [...counts].map(([name, count]) => ({ category: name, count }));
    }
  } catch (error) {
    if (mine === generation) show(main, title("Shop"), failure(error));
    return;
  }
  if (mine !== generation) return;
  const choose = (name) => {
    const next = new URLSearchParams();
    if (q) next.set("q", q);
    if (name && name !== category) next.set("category", name);
    history.replaceState(null, "", `/${next.toString() ? `?${next}` : ""}`);
    route();
  };
  show(
    main,
    title(q ? `Results for “${q}”` : "Shop"),
    h(
      "ul",
      { class: "facets", "aria-label": "Categories" },
      facets
        .sort((a, b) => a.category.localeCompare(b.category))
        .map((f) =>
          h("li", {}, h("button", { type: "button", class: "secondary", "aria-pressed": String(f.category === category), onclick: () => choose(f.category) }, `${f.category} (${f.count})`)),
        ),
    ),
    products.length
      ? h("ul", { class: "grid", "aria-label": "Products" }, products.map(productCard))
      : h("p", {}, q ? "Nothing matches that. Try fewer or other words." : "The shop is empty for now."),
  );
  say(`${products.length} products`);
}

async function productPage(id) {
  let product;
  let available = null;
  try {
    product = await api("GET", `/api/v1/products/${encodeURIComponent(id)}`);
    const stock = await api("GET", `/api/v1/stock?skus=${encodeURIComponent(product.sku)}`);
    available = stock.stock[0]?.available ?? 0;
  } catch (error) {
    show(main, title("Product"), failure(error));
    return;
  }
  const quantity = h("input", { id: "quantity", name: "quantity", type: "number", min: 1, max: 999, value: 1, inputmode: "numeric" });
  const form = h(
    "form",
    {
      class: "card narrow",
      onsubmit: (event) => {
        event.preventDefault();
        const n = Number.parseInt(quantity.value, 10);
        if (!(n >= 1 && n <= 999)) {
          quantity.setAttribute("aria-invalid", "true");
          form.querySelector("[role=alert]").textContent = "Choose a quantity from 1 to 999.";
          quantity.focus();
          return;
        }
        formError(form, null);
        addToCart(product, n);
      },
    },
    h("div", { class: "field" }, h("label", { for: "quantity" }, "Quantity"), quantity),
    h("div", { role: "alert" }),
    h("button", { type: "submit", disabled: available === 0 }, available === 0 ? "Out of stock" : "Add to cart"),
  );
  show(
    main,
    h("p", {}, h("a", { href: "/", "data-link": true }, "← Back to the shop")),
    title(product.name),
    h("div", { class: "row" },
      h("img", { src: product.image_url, alt: product.name, width: 480, height: 360, style: "max-width:100%;height:auto;border-radius:10px" }),
      h("div", {},
        h("p", { class: "price" }, money(product.price)),
        h("p", {}, product.description),
        h("p", { class: "muted" }, `SKU ${product.sku} · ${available} in stock`),
        form,
      ),
    ),
  );
}

// ---- cart and checkout --------------------------------------------------

async function cartPage() {
  const items = cart();
  if (!items.length) {
    show(main, title("Your cart"), h("p", {}, "Your cart is empty. ", h("a", { href: "/", "data-link": true }, "Find something")));
    return;
  }
  const currency = items[0].price.currency;
  const total = items.reduce((sum, i) => sum + i.price.amount_minor * i.quantity, 0);
  const rows = items.map((item, index) => {
    const input = h("input", {
      type: "number", min: 0, max: 999, value: item.quantity, name: `quantity-${index}`, "aria-label": `Quantity of ${item.name}`, style: "max-width:6rem",
      onchange: (event) => {
        const n = Number.parseInt(event.target.value, 10);
        const next = cart();
        if (!(n >= 1)) next.splice(index, 1);
        else next[index].quantity = Math.min(999, n);
        saveCart(next);
        route();
      },
    });
    return h("tr", {},
      h("td", {}, h("a", { href: `/products/${item.product_id}`, "data-link": true }, item.name)),
      h("td", {}, input),
      h("td", { class: "num" }, money({ amount_minor: item.price.amount_minor * item.quantity, currency: item.price.currency })),
      h("td", {}, h("button", { type: "button", class: "secondary", onclick: () => { const next = cart(); next.splice(index, 1); saveCart(next); route(); } }, "Remove")),
    );
  });
  const table = h("div", { class: "table-wrap" }, h("table", {},
    h("caption", { class: "skip" }, "Cart"),
    h("thead", {}, h("tr", {}, h("th", {}, "Item"), h("th", {}, "Quantity"), h("th", { class: "num" }, "Price"), h("th", {}, h("span", { class: "skip" }, "Actions")))),
    h("tbody", {}, rows),
    h("tfoot", {}, h("tr", {}, h("th", { colspan: 2 }, "Estimated total"), h("th", { class: "num" }, money({ amount_minor: total, currency })), h("th", {}))),
  ));
  const parts = [title("Your cart"), table, h("p", { class: "muted" }, "Prices are confirmed by the shop when you order.")];
  if (!me) {
    parts.push(h("p", {}, h("a", { class: "button", href: "/signin?next=/cart", "data-link": true }, "Sign in to check out")));
    show(main, parts);
    return;
  }
  let methods = [];
  try {
    methods = (await api("GET", "/api/v1/me/payment-methods")).payment_methods;
  } catch (error) {
    parts.push(failure(error));
  }
  const choices = methods.map((m, i) =>
    h("div", {}, h("input", { type: "radio", name: "payment", id: `pay-${m.id}`, value: m.id, checked: i === 0, style: "width:auto;min-height:auto" }),
      " ", h("label", { for: `pay-${m.id}` }, `${m.brand.toUpperCase()} •••• ${m.last4} (expires ${String(m.exp_month).padStart(2, "0")}/${m.exp_year})${m.is_default ? " · default" : ""}`)),
  );
  choices.push(
    h("div", {}, h("input", { type: "radio", name: "payment", id: "pay-checkout", value: "checkout", checked: methods.length === 0, style: "width:auto;min-height:auto" }),
      " ", h("label", { for: "pay-checkout" }, "Pay on the secure checkout page")),
  );
  const form = h(
    "form",
    { class: "card narrow", onsubmit: (event) => placeOrder(event, form) },
    h("fieldset", { style: "border:0;padding:0;margin:0" }, h("legend", {}, h("strong", {}, "Pay with")), choices),
    h("p", {}, h("a", { href: "/account?next=/cart", "data-link": true }, "Add a card")),
    h("div", { role: "alert" }),
    h("button", { type: "submit" }, "Place order"),
  );
  parts.push(h("h2", {}, "Checkout"), form);
  show(main, parts);
}

async function placeOrder(event, form) {
  event.preventDefault();
  const button = form.querySelector("button[type=submit]");
  const choice = new FormData(form).get("payment");
  const body = { lines: cart().map((i) => ({ sku: i.sku, quantity: i.quantity })) };
  if (choice === "checkout") body.checkout = true;
  else body.payment_method_id = choice;
  // One key per cart: a retry after a lost answer is the same order.
  let key = sessionStorage.getItem("kart.checkout-key");
  if (!key) {
    key = newKey();
    sessionStorage.setItem("kart.checkout-key", key);
  }
  button.disabled = true;
  formError(form, null);
  try {
    const order = await api("POST", "/api/v1/orders", body, { "idempotency-key": key });
    localStorage.removeItem(CART);
    sessionStorage.removeItem("kart.checkout-key");
    drawCartLink();
    if (order.checkout_url) {
      location.assign(order.checkout_url);
    } else {
      go(`/orders/${order.id}?placed=1`);
    }
  } catch (error) {
    if (error.field && error.field.startsWith("lines")) {
      form.querySelector("[role=alert]").textContent = explain(error);
    } else {
      formError(form, error);
    }
    button.disabled = false;
  }
}

// ---- accounts -----------------------------------------------------------

function next(params, fallback) {
  const target = params.get("next") || fallback;
  return target.startsWith("/") && !target.startsWith("//") ? target : fallback;
}

function signPage(params, signingUp) {
  const form = h(
    "form",
    {
      class: "card narrow",
      onsubmit: async (event) => {
        event.preventDefault();
        const data = Object.fromEntries(new FormData(form));
        const button = form.querySelector("button");
        button.disabled = true;
        try {
          const session = await api("POST", signingUp ? "/api/v1/auth/signup" : "/api/v1/auth/signin", data);
          me = session.user;
          drawSession();
          go(next(params, "/"));
        } catch (error) {
          formError(form, error);
          button.disabled = false;
        }
      },
    },
    signingUp ? field("Your name", "display_name", { autocomplete: "name" }) : null,
    field("Email", "email", { type: "email", required: true, autocomplete: "email" }),
    field("Password", "password", { type: "password", required: true, autocomplete: signingUp ? "new-password" : "current-password", minlength: signingUp ? 10 : undefined }),
    signingUp ? h("p", { class: "muted" }, "At least 10 characters; a phrase of a few words is easy to remember.") : null,
    h("div", { role: "alert" }),
    h("button", { type: "submit" }, signingUp ? "Create account" : "Sign in"),
  );
  const other = signingUp
    ? h("p", {}, "Have an account? ", h("a", { href: `/signin?${params}`, "data-link": true }, "Sign in"))
    : h("p", {}, "New here? ", h("a", { href: `/signup?${params}`, "data-link": true }, "Create an account"));
  show(main, title(signingUp ? "Create your account" : "Sign in"), form, other);
  form.querySelector("input").focus();
}

async function accountPage(params) {
  if (!me) return needSession("/account");
  let methods = [];
  let problem = null;
  try {
    methods = (await api("GET", "/api/v1/me/payment-methods")).payment_methods;
  } catch (error) {
    problem = failure(error);
  }
  const act = async (method, path) => {
    try {
      await api(method, path);
      route();
    } catch (error) {
      say(explain(error));
    }
  };
  const list = methods.length
    ? h("ul", { "aria-label": "Saved cards" }, methods.map((m) =>
        h("li", {}, `${m.brand.toUpperCase()} •••• ${m.last4}, expires ${String(m.exp_month).padStart(2, "0")}/${m.exp_year}${m.is_default ? " (default)" : ""} `,
          m.is_default ? null : h("button", { type: "button", class: "secondary", onclick: () => act("POST", `/api/v1/me/payment-methods/${m.id}/default`) }, "Make default"),
          " ",
          h("button", { type: "button", class: "secondary", onclick: () => act("DELETE", `/api/v1/me/payment-methods/${m.id}`), "aria-label": `Remove card ending ${m.last4}` }, "Remove"))))
    : h("p", {}, "No saved cards yet.");
  const form = h(
    "form",
    {
      class: "card narrow",
      onsubmit: async (event) => {
        event.preventDefault();
        const data = Object.fromEntries(new FormData(form));
        const body = { card_number: data.card_number, exp_month: Number(data.exp_month), exp_year: Number(data.exp_year), cvc: data.cvc };
        const button = form.querySelector("button");
        button.disabled = true;
        try {
          await api("POST", "/api/v1/me/payment-methods", body);
          form.reset();
          say("Card saved.");
          if (params.get("next")) go(next(params, "/account"));
          else route();
        } catch (error) {
          formError(form, error);
          button.disabled = false;
        }
      },
    },
    h("h2", {}, "Add a card"),
    field("Card number", "card_number", { inputmode: "numeric", autocomplete: "cc-number", required: true }),
    h("div", { class: "row" },
      field("Month", "exp_month", { inputmode: "numeric", autocomplete: "cc-exp-month", required: true, placeholder: "MM" }),
      field("Year", "exp_year", { inputmode: "numeric", autocomplete: "cc-exp-year", required: true, placeholder: "YYYY" }),
      field("CVC", "cvc", { inputmode: "numeric", autocomplete: "cc-csc", required: true })),
    h("p", { class: "muted" }, "Test cards: 4242 4242 4242 4242 pays, 4000 0000 0000 0002 is declined. The card number goes to the payment provider; Kart keeps only its last four digits."),
    h("div", { role: "alert" }),
    h("button", { type: "submit" }, "Save card"),
  );
  const signOut = h("button", {
    type: "button", class: "secondary",
    onclick: async () => {
      await api("POST", "/api/v1/auth/signout", {}).catch(() => {});
      me = null;
      drawSession();
      go("/");
    },
  }, "Sign out");
  show(main, title("Your account"), h("p", {}, `${me.display_name} · ${me.email} `, signOut), problem, h("h2", {}, "Saved cards"), list, form);
}

// ---- orders -------------------------------------------------------------

const FAILURES = {
  card_declined: "Your bank declined the card. Try another card.",
  insufficient_funds: "The card has insufficient funds. Try another card.",
  expired_card: "The card has expired. Add a current card.",
  out_of_stock: "Some items ran out before your order could be reserved. Nothing was charged.",
  payment_timeout: "The payment did not arrive in time. Nothing was charged.",
  checkout_expired: "The payment page timed out. Nothing was charged.",
};

function failureText(order) {
  return FAILURES[order.failure_code] || "The order could not be completed. Nothing was charged.";
}

async function ordersPage() {
  if (!me) return needSession("/orders");
  let page;
  try {
    page = await api("GET", "/api/v1/orders?limit=50");
  } catch (error) {
    show(main, title("Your orders"), failure(error));
    return;
  }
  if (!page.orders.length) {
    show(main, title("Your orders"), h("p", {}, "No orders yet. ", h("a", { href: "/", "data-link": true }, "Start shopping")));
    return;
  }
  show(main, title("Your orders"), h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "Order"), h("th", {}, "Placed"), h("th", {}, "Status"), h("th", { class: "num" }, "Total"))),
    h("tbody", {}, page.orders.map((o) => h("tr", {},
      h("td", {}, h("a", { href: `/orders/${o.id}`, "data-link": true }, o.id)),
      h("td", {}, when(o.created_at)),
      h("td", {}, badge(o.status)),
      h("td", { class: "num" }, money(o.total))))))));
}

function drawOrder(order, placed) {
  const cancellable = ["PENDING", "RESERVED", "PAID"].includes(order.status);
  const status = h("p", { id: "order-status" }, "Status: ", badge(order.status));
  const notes = [];
  if (placed && order.status !== "FAILED") notes.push(h("div", { class: "notice good" }, "Thank you! Your order is placed."));
  if (order.status === "FAILED") notes.push(h("div", { class: "notice bad", role: "alert" }, failureText(order)));
  if (order.status === "PAID") notes.push(h("div", { class: "notice good" }, "Paid. A confirmation is on its way to your inbox."));
  if (["PENDING", "RESERVED"].includes(order.status)) {
    notes.push(h("div", { class: "notice" }, order.payment_kind === "checkout" && order.status === "RESERVED"
      ? h("span", {}, "Waiting for your payment. ", h("a", { href: order.checkout_url }, "Pay now"))
      : "Processing: this page updates by itself."));
  }
  if (order.refunded.amount_minor > 0) notes.push(h("div", { class: "notice" }, `${money(order.refunded)} refunded to your card.`));
  else if (order.refund_pending.amount_minor > 0) notes.push(h("div", { class: "notice" }, `A refund of ${money(order.refund_pending)} is on its way.`));
  const cancel = cancellable
    ? h("button", {
        type: "button", class: "danger",
        onclick: async (event) => {
          if (!confirm(order.status === "PAID" ? "Cancel this order and refund it?" : "Cancel this order?")) return;
          event.target.disabled = true;
          try {
            drawOrder(await api("POST", `/api/v1/orders/${order.id}/cancel`, {}), false);
            say("Order cancelled.");
          } catch (error) {
            say(explain(error));
            event.target.disabled = false;
          }
        },
      }, order.status === "PAID" ? "Cancel and refund" : "Cancel order")
    : null;
  show(
    main,
    h("p", {}, h("a", { href: "/orders", "data-link": true }, "← Your orders")),
    title(`Order ${order.id}`),
    status,
    notes,
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Item"), h("th", { class: "num" }, "Qty"), h("th", { class: "num" }, "Price"))),
      h("tbody", {}, order.lines.map((l) => h("tr", {}, h("td", {}, l.name || l.sku), h("td", { class: "num" }, l.quantity), h("td", { class: "num" }, money(l.line_total))))),
      h("tfoot", {}, h("tr", {}, h("th", { colspan: 2 }, "Total"), h("th", { class: "num" }, money(order.total)))))),
    h("h2", {}, "History"),
    h("ol", { class: "timeline" }, order.history.map((t) => h("li", {}, h("strong", {}, t.to), ` · ${when(t.at)}`, t.detail ? h("div", { class: "muted" }, t.detail) : null))),
    h("p", {}, cancel),
  );
}

async function orderPage(id, params) {
  if (!me) return needSession(`/orders/${id}`);
  let order;
  try {
    order = await api("GET", `/api/v1/orders/${encodeURIComponent(id)}`);
  } catch (error) {
    show(main, title("Order"), failure(error));
    return;
  }
  const placed = params.get("placed") === "1";
  drawOrder(order, placed);
  // Live status: the order again each time it changes.
  const stream = new EventSource(`/api/v1/orders/${encodeURIComponent(id)}/stream`);
  let last = order.status;
  stream.addEventListener("order", (event) => {
    const next = JSON.parse(event.data);
    drawOrder(next, placed);
    if (next.status !== last) {
      last = next.status;
      say(`Order status: ${next.status}`);
    }
  });
  leave = () => stream.close();
}

// ---- routing ------------------------------------------------------------

async function route() {
  generation += 1;
  leave();
  leave = () => {};
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  let match;
  if (path === "/") await catalog(params);
  else if ((match = path.match(/^\/products\/([^/]+)$/))) await productPage(decodeURIComponent(match[1]));
  else if (path === "/cart") await cartPage();
  else if (path === "/signin") signPage(params, false);
  else if (path === "/signup") signPage(params, true);
  else if (path === "/account") await accountPage(params);
  else if (path === "/orders") await ordersPage();
  else if ((match = path.match(/^\/orders\/([^/]+)$/))) await orderPage(decodeURIComponent(match[1]), params);
  else show(main, title("Not found"), h("p", {}, "There is no page here. ", h("a", { href: "/", "data-link": true }, "Go to the shop")));
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || link.target) return;
  event.preventDefault();
  go(link.getAttribute("href"));
  main.focus();
});
window.addEventListener("popstate", route);

document.getElementById("search").addEventListener("input", (event) => {
  clearTimeout(typing);
  typing = setTimeout(() => {
    const q = event.target.value.trim();
    const target = q ? `/?q=${encodeURIComponent(q)}` : "/";
    if (location.pathname === "/") history.replaceState(null, "", target);
    else history.pushState(null, "", target);
    route();
  }, 200);
});
document.getElementById("search-form").addEventListener("submit", (event) => event.preventDefault());

drawCartLink();
loadMe().then(route);
