// The storefront and the console in a real browser (Debian's Chromium,
// headless, driven by playwright-core). crates/kart/tests/browser starts
// Kart and a real SMTP server and runs this file with:
//   KART_URL              the gateway
//   KART_ADMIN_EMAIL, KART_ADMIN_PASSWORD
//   KART_SMTP_DIR         the SMTP server's folder (a `refuse` file there
//                         makes it refuse every message)
//   KART_SCREENSHOTS      optional: where to save screenshots of the pages
//   KART_CHROMIUM         the browser (default /usr/bin/chromium)

import assert from "node:assert/strict";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

const url = process.env.KART_URL;
const adminEmail = process.env.KART_ADMIN_EMAIL;
const adminPassword = process.env.KART_ADMIN_PASSWORD;
const smtpDir = process.env.KART_SMTP_DIR;
const shots = process.env.KART_SCREENSHOTS;
assert.ok(url && adminEmail && adminPassword && smtpDir, "run through crates/kart/tests/browser");

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.KART_CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu"],
  });
});

after(async () => {
  await browser?.close();
});

async function screenshot(page, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: false });
}

/** A page whose console errors and failed scripts fail the test. */
async function newPage(viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error" && !/status of 4\d\d/.test(message.text())) errors.push(message.text());
  });
  page.errors = errors;
  return page;
}

function unique(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
}

async function adminToken() {
  const response = await fetch(`${url}/api/v1/auth/signin`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: adminEmail, password: adminPassword }),
  });
  assert.equal(response.status, 200);
  return (await response.json()).access_token;
}

async function adminGet(token, path) {
  const response = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(response.status, 200, path);
  return response.json();
}

async function until(what, check, timeout = 30000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function signInToConsole(page) {
  await page.goto(`${url}/console`);
  await page.getByLabel("Email").fill(adminEmail);
  await page.getByLabel("Password").fill(adminPassword);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("link", { name: "Dead letters" }).waitFor();
}

/** Signs a new shopper up through the storefront, from wherever it is. */
async function signUp(page, name) {
  const email = `${unique(name.toLowerCase())}@example.com`;
  await page.getByLabel("Your name").fill(name);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("correct horse battery staple");
  await page.getByRole("button", { name: "Create account" }).click();
  return email;
}

async function saveCard(page, number) {
  await page.getByLabel("Card number").fill(number);
  await page.getByLabel("Month").fill("12");
  await page.getByLabel("Year").fill("2031");
  await page.getByLabel("CVC").fill("123");
  await page.getByRole("button", { name: "Save card" }).click();
}

test("an admin replays a dead letter from the console", async () => {
  // The mail server refuses: a new shopper's welcome mail dies (one try).
  writeFileSync(join(smtpDir, "refuse"), "550 5.7.1 Mailbox unavailable");
  const email = `${unique("bounce")}@example.com`;
  const signup = await fetch(`${url}/api/v1/auth/signup`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password: "correct horse battery staple", display_name: "Bounce" }),
  });
  assert.equal(signup.status, 201);
  const userId = (await signup.json()).user.id;
  const token = await adminToken();
  const dead = await until("the welcome mail to die", async () => {
    const list = await adminGet(token, "/api/v1/admin/dead-letters");
    return list.messages.find((m) => m.user_id === userId);
  });
  rmSync(join(smtpDir, "refuse"));

  const page = await newPage();
  await signInToConsole(page);
  await page.getByRole("link", { name: "Dead letters" }).click();
  const row = page.getByRole("row").filter({ hasText: email });
  await row.waitFor();
  assert.match(await row.innerText(), /550/);
  await screenshot(page, "console-dead-letters");
  await row.getByRole("button", { name: /Replay/ }).click();
  await page.locator("#replayed").filter({ hasText: `${dead.id}: queued` }).waitFor();

  // Delivered now: the mailbox says sent.
  await until("the replayed mail to be sent", async () => {
    const message = await adminGet(token, `/api/v1/admin/mailbox/${dead.id}`);
    return message.status === "sent";
  });
  await page.getByRole("link", { name: "Mailbox" }).click();
  const sent = page.getByRole("row").filter({ hasText: email });
  await sent.filter({ hasText: "sent" }).waitFor();
  await screenshot(page, "console-mailbox");
  assert.deepEqual(page.errors, []);
});

test("a shopper finds a mug by search, pays with a test card and sees PAID live", async () => {
  const page = await newPage();
  await page.goto(url);
  await page.locator("#search").pressSequentially("stonware mu", { delay: 40 });
  await page.getByRole("heading", { name: "Results for “stonware mu”" }).waitFor();
  const card = page.getByRole("listitem").filter({ hasText: "Stoneware mug" });
  await card.waitFor();
  await screenshot(page, "storefront-search");
  await card.getByRole("link", { name: "Stoneware mug" }).click();
  await page.getByRole("heading", { name: "Stoneware mug" }).waitFor();
  await page.getByLabel("Quantity").fill("2");
  await page.getByRole("button", { name: "Add to cart" }).click();
  await page.getByRole("link", { name: "Cart (2)" }).click();
  await page.getByRole("link", { name: "Sign in to check out" }).click();
  await page.getByRole("link", { name: "Create an account" }).click();
  const email = await signUp(page, "Ada");
  await page.getByRole("heading", { name: "Your cart" }).waitFor();
  await page.getByRole("link", { name: "Add a card" }).click();
  await saveCard(page, "4242 4242 4242 4242");
  await page.getByRole("heading", { name: "Your cart" }).waitFor();
  await page.getByLabel(/VISA •••• 4242/).check();
  await screenshot(page, "storefront-cart");

  // Live: the order page is never reloaded; PAID arrives on its own.
  await page.getByRole("button", { name: "Place order" }).click();
  await page.getByRole("heading", { name: /^Order ord_/ }).waitFor();
  await page.evaluate(() => (window.__notReloaded = true));
  const status = page.locator("#order-status");
  await status.filter({ hasText: "PAID" }).waitFor({ timeout: 30000 });
  assert.equal(await page.evaluate(() => window.__notReloaded), true, "PAID appeared without a reload");
  const orderId = (await page.getByRole("heading", { name: /^Order ord_/ }).innerText()).replace("Order ", "");
  await page.getByText("A confirmation is on its way").waitFor();
  await screenshot(page, "storefront-order-paid");

  // The confirmation is in the mailbox, for the admin.
  const admin = await newPage();
  await signInToConsole(admin);
  await admin.goto(`${url}/console/mailbox`);
  const confirmation = admin.getByRole("row").filter({ hasText: `Order ${orderId} confirmed` });
  await until("the confirmation in the mailbox", async () => {
    if (await confirmation.count()) return true;
    await admin.reload();
    return false;
  });
  assert.match(await confirmation.innerText(), new RegExp(email));
  await confirmation.getByRole("link").click();
  await admin.getByRole("heading", { name: `Order ${orderId} confirmed` }).waitFor();
  const text = await admin.locator("pre").innerText();
  assert.match(text, /2 x Stoneware mug \(MUG-STONE\)/);
  await screenshot(admin, "console-message");

  // The order's timeline, across services.
  await admin.goto(`${url}/console/orders/${orderId}`);
  await admin.getByRole("list", { name: "Timeline" }).filter({ hasText: "order_confirmed mail" }).waitFor();
  await screenshot(admin, "console-order");
  await admin.goto(`${url}/console/analytics`);
  await admin.getByText("Orders per minute").waitFor();
  await screenshot(admin, "console-analytics");
  await admin.goto(`${url}/console/topics`);
  await admin.getByRole("cell", { name: "order.events" }).first().waitFor();
  await screenshot(admin, "console-topics");
  assert.deepEqual(page.errors, []);
  assert.deepEqual(admin.errors, []);
});

test("a declined card shows the decline, on a phone-sized screen", async () => {
  const page = await newPage({ width: 390, height: 844 });
  await page.goto(`${url}/signup`);
  await signUp(page, "Grace");
  await page.getByRole("heading", { name: "Shop" }).waitFor();
  await page.goto(`${url}/account`);
  await saveCard(page, "4000 0000 0000 0002");
  await page.getByText("•••• 0002").waitFor();
  await page.goto(url);
  await page.getByRole("button", { name: "Add Stoneware mug to cart" }).click();
  await page.getByRole("link", { name: "Cart (1)" }).click();
  await page.getByRole("button", { name: "Place order" }).click();
  const alert = page.getByRole("alert").filter({ hasText: "Your bank declined the card" });
  await alert.waitFor({ timeout: 30000 });
  await page.locator("#order-status").filter({ hasText: "FAILED" }).waitFor();
  await screenshot(page, "storefront-declined-phone");
  assert.deepEqual(page.errors, []);
});

test("bad input is explained where it was typed", async () => {
  const page = await newPage();
  await page.goto(`${url}/signup`);
  await page.getByLabel("Your name").fill("Short");
  await page.getByLabel("Email").fill(`${unique("short")}@example.com`);
  await page.getByLabel("Password").fill("tiny");
  // The browser's own check stops a too-short password; the server's
  // answer is shown for what the browser lets through.
  await page.evaluate(() => document.querySelector("input[name=password]").removeAttribute("minlength"));
  await page.getByRole("button", { name: "Create account" }).click();
  const alert = page.getByRole("alert").filter({ hasText: /password/i });
  await alert.waitFor();
  assert.equal(await page.getByLabel("Password").getAttribute("aria-invalid"), "true");
  assert.ok(existsSync(smtpDir));
});
