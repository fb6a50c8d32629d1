// lib.mjs - what the browser tests share: the servers run.py started (from
// the environment), a headless Chromium, screenshots, TOTP codes (RFC 6238,
// computed here from the key the page shows), page steps a user takes, and
// a tiny IMAP client for client-specific passwords.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import tls from "node:tls";
import assert from "node:assert/strict";
import pw from "playwright-core";

const { chromium } = pw;

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests through tests/browser/run.py`);
  return v;
}

export const BASE = need("MFA_BASE_URL");
export const DEAD = process.env.MFA_DEAD_URL || "";
export const PORTS = JSON.parse(need("MFA_PORTS"));
export const USERS = JSON.parse(need("MFA_USERS"));
const OUT = process.env.MFA_OUT_DIR || path.join(path.dirname(new URL(import.meta.url).pathname), "out");

export async function launch() {
  return chromium.launch({
    executablePath: process.env.MFA_CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

// A fresh browser profile (cookies and all) with a language; errors in the
// page's console or a CSP violation fail the test at the end (see checkPage).
export async function newContext(browser, { locale = "zh-CN" } = {}) {
  const ctx = await browser.newContext({
    ignoreHTTPSErrors: true,
    locale,
    viewport: { width: 1100, height: 760 },
    permissions: ["clipboard-read", "clipboard-write"],
  });
  return ctx;
}

export async function newPage(ctx) {
  const page = await ctx.newPage();
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push("page error: " + e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource: the server responded with a status of (40[0-9]|41[0-9]|42[0-9]|50[0-9])/.test(m.text()))
      page.problems.push("console error: " + m.text());
  });
  page.setDefaultTimeout(15000);
  return page;
}

export function checkPage(page) {
  assert.deepEqual(page.problems, [], "the page logged errors");
}

// Screenshots: out/<test>/NN-name.png, numbered in the order taken.
export function shooter(test) {
  const dir = path.join(OUT, test);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  let n = 0;
  return async (page, name) => {
    n += 1;
    const file = path.join(dir, `${String(n).padStart(2, "0")}-${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    return file;
  };
}

// ---- TOTP (RFC 6238: HMAC-SHA1, 30 s, 6 digits) ------------------------------

function base32(s) {
  const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0, value = 0;
  const out = [];
  for (const ch of s.replace(/[=\s]/g, "").toUpperCase()) {
    const i = abc.indexOf(ch);
    if (i < 0) throw new Error("not base32: " + ch);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

export function totp(secret, step) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac("sha1", base32(secret)).update(msg).digest();
  const off = mac[mac.length - 1] & 0x0f;
  const n = (mac.readUInt32BE(off) & 0x7fffffff) % 1000000;
  return String(n).padStart(6, "0");
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The server takes a code once, and never an older one after a newer one;
// it accepts the steps now-1, now and now+1.  So each code comes from the
// lowest step in that window above the last one used, waiting for the
// clock when the window is used up.  (Step now-1 is skipped when it is
// about to fall out of the window.)
export class TotpClock {
  constructor(secret) {
    this.secret = secret;
    this.last = -Infinity;
  }
  async next() {
    for (;;) {
      const now = Date.now() / 1000;
      const cur = Math.floor(now / 30);
      const left = 30 - (now % 30);
      for (const s of [cur - 1, cur, cur + 1]) {
        if (s <= this.last) continue;
        if (s === cur - 1 && left < 6) continue;
        this.last = s;
        return totp(this.secret, s);
      }
      await sleep(left * 1000 + 200);
    }
  }
  // A code that is wrong at any step the server accepts now.
  wrong() {
    const cur = Math.floor(Date.now() / 30000);
    const good = new Set([-2, -1, 0, 1, 2].map((d) => totp(this.secret, cur + d)));
    for (let n = 0; ; n++) {
      const c = String((135791 + n * 7919) % 1000000).padStart(6, "0");
      if (!good.has(c)) return c;
    }
  }
}

// ---- page steps ------------------------------------------------------------

export async function open(page, hash = "#/login", base = BASE) {
  await page.goto(base + "/" + hash);
  await page.waitForSelector("body[data-ready='1']");
}

// Fills the sign-in form and submits; resolves to "ok" (the settings page)
// or "second_factor" (the dialog), or "error" (the form's error line).
export async function signIn(page, user, password) {
  await page.waitForSelector("#login-form");
  await page.fill("#login-user", user);
  await page.fill("#login-password", password);
  await page.click("#login-submit");
  const which = await Promise.race([
    page.waitForSelector("#page-2fa", { state: "visible" }).then(() => "ok"),
    page.waitForSelector("#sf-dialog", { state: "visible" }).then(() => "second_factor"),
    page.waitForSelector("#login-error", { state: "visible" }).then(() => "error"),
  ]);
  return which;
}

export async function signOut(page) {
  await page.click("#logout");
  await page.waitForSelector("#login-form");
}

// Binds the authenticator app from the settings page; returns the key.
export async function bindTotp(page, shot) {
  await page.click("#bind-totp");
  await page.waitForSelector("#otp-dialog");
  // The key as the user reads it (groups of four), without the spaces.
  const secret = (await page.textContent("#otp-secret")).replace(/\s+/g, "");
  assert.match(secret, /^[A-Z2-7]{16,}$/);
  // The QR is an image built from the API's SVG (a data: URL, allowed by the CSP).
  const qr = await page.$eval("#otp-qr", (img) => ({ src: img.src.slice(0, 26), w: img.naturalWidth, ok: img.complete }));
  assert.equal(qr.src, "data:image/svg+xml;base64,");
  assert.ok(qr.ok && qr.w > 0, "the QR image loaded");
  const clock = new TotpClock(secret);
  if (shot) await shot(page, "bind-otp-dialog");
  await page.fill("#otp-code", await clock.next());
  await page.click("#otp-ok");
  await page.waitForSelector("#otp-dialog", { state: "detached" });
  await page.waitForSelector("#factor-totp[data-bound='1']");
  return clock;
}

// Answers the second-factor dialog with a code.
export async function enterCode(page, code, { trust = false } = {}) {
  await page.fill("#sf-code", code);
  if (await page.$("#sf-trust")) {
    if (trust) await page.check("#sf-trust");
    else await page.uncheck("#sf-trust");
  }
  await page.click("#sf-ok");
}

// ---- IMAP ------------------------------------------------------------------

function imapQuote(s) {
  return '"' + s.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
}

// LOGIN over IMAPS through the proxy; resolves to the tagged reply line.
export function imapLogin(user, password, port = PORTS.imaps) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false });
    let buf = "";
    let sent = false;
    const timer = setTimeout(() => { sock.destroy(); reject(new Error("IMAP timeout: " + buf)); }, 20000);
    sock.setEncoding("utf8");
    sock.on("data", (d) => {
      buf += d;
      if (!sent && buf.includes("\r\n")) {
        sent = true;
        sock.write(`a1 LOGIN ${imapQuote(user)} ${imapQuote(password)}\r\n`);
      }
      const m = buf.match(/^a1 .*$/m);
      if (m) {
        clearTimeout(timer);
        sock.write("a2 LOGOUT\r\n");
        sock.end();
        resolve(m[0].trim());
      }
    });
    sock.on("error", (e) => { clearTimeout(timer); reject(e); });
  });
}

// The API as the page's own fetch sees it (same cookies), for assertions.
export async function apiGet(page, p) {
  return page.evaluate(async (u) => {
    const r = await fetch(u, { credentials: "same-origin" });
    return { status: r.status, body: await r.json().catch(() => null) };
  }, p);
}

// ---- WeChat: the stand-in and the phone ------------------------------------
//
// run.py starts a stand-in for WeChat's server API (tests/wechat_standin.py)
// and gives mfagate's [wechat] its URL (MFA_WECHAT_STANDIN).  The phone is
// tests/phone_sim.py, which does over /api/mp/ what the mini program does;
// given --standin and --openid, it logs in with a wx.login code that it has
// the stand-in mint for that openid (POST /_standin/code {"openid"} ->
// {"code"}) whenever it needs one, so each Phone is one WeChat account.  Its
// inbox is the stand-in's record of the subscribe messages sent to it.

export const STANDIN = process.env.MFA_WECHAT_STANDIN || "";
const PHONE_SIM = process.env.MFA_PHONE_SIM || path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "phone_sim.py");
const PYTHON = process.env.MFA_PYTHON || "/usr/bin/python3";

// POST (or GET, with body null) to the stand-in's control API; resolves to its JSON.
export async function standin(p, body = {}, base = STANDIN) {
  assert.ok(base, "run.py sets MFA_WECHAT_STANDIN");
  const r = body === null ? await fetch(base + p)
    : await fetch(base + p, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const text = await r.text();
  assert.ok(r.ok, `stand-in ${p}: HTTP ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

let phoneSeq = 0;

export class Phone {
  // openid: the WeChat account; base: the mfagate it talks to; standinBase:
  // the stand-in that mints its login codes and holds its pushed messages.
  constructor(openid, { base = BASE, standinBase = STANDIN } = {}) {
    this.openid = openid;
    this.base = base;
    this.standinBase = standinBase;
    const dir = fs.mkdtempSync(path.join(process.env.TMPDIR || "/tmp", "mfa-phone-"));
    this.state = path.join(dir, `phone-${process.pid}-${++phoneSeq}.json`);
  }

  // Runs phone_sim.py as this WeChat user (it logs in, with a code from the
  // stand-in, when it has no token yet or the server forgot it); resolves to
  // {status, stdout, stderr}.
  async run(...args) {
    assert.ok(this.standinBase, "run.py sets MFA_WECHAT_STANDIN");
    const argv = [PHONE_SIM, "--base", this.base, "--state", this.state,
      "--standin", this.standinBase, `--openid=${this.openid}`];
    if (process.env.MFA_CAFILE) argv.push("--cafile", process.env.MFA_CAFILE);
    argv.push(...args);
    const { execFile } = await import("node:child_process");
    return new Promise((resolve) => {
      execFile(PYTHON, argv, { timeout: 30000 }, (err, stdout, stderr) => {
        resolve({ status: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr });
      });
    });
  }

  async ok(...args) {
    const r = await this.run(...args);
    assert.equal(r.status, 0, `phone_sim ${args.join(" ")} (${this.openid}) failed: ${r.stderr}`);
    return r.stdout;
  }

  // The request behind a scanned QR: {kind, mailbox, addr, time, expires,
  // state}, and numbers [a, b, c] for a pushed request.
  async show(scene) {
    return JSON.parse(await this.ok("--json", "show", scene));
  }

  // answer: trust | temporary | deny | confirm; number: the one picked among
  // a pushed request's three (the one the page shows, or not).
  async answer(scene, answer, { number } = {}) {
    const args = ["answer", scene, answer];
    if (number !== undefined) args.push("--number", String(number));
    await this.ok(...args);
  }

  // The subscribe messages WeChat (the stand-in) delivered to this account,
  // oldest first: [{touser, page, data, ...}]; a message's page is
  // pages/confirm/confirm?scene=<scene>.
  async inbox() {
    return JSON.parse(await this.ok("--json", "inbox")).messages;
  }

  // [{mailbox, secret, ...}]: the mailboxes bound to this WeChat account.
  async accounts() {
    return JSON.parse(await this.ok("--json", "accounts")).accounts;
  }

  // The mini program's current code for a mailbox (RFC 6238 over the secret
  // the server gave, as phone_sim computes it).
  async codeFor(mailbox) {
    const out = await this.ok("accounts");
    const line = out.split("\n").find((l) => l.split("\t")[0] === mailbox);
    assert.ok(line, `${mailbox} is not among ${this.openid}'s accounts:\n${out}`);
    return line.split("\t")[1];
  }
}

// The scene of the QR on screen (data-testid=scan-scene), once it waits.
export async function scanScene(page, { qr: withQr = true } = {}) {
  await page.waitForSelector("[data-testid=scan-status][data-state=pending], [data-testid=scan-status][data-state=error]");
  if (await page.$("[data-testid=scan-status][data-state=error]"))
    assert.fail("the QR did not come: " + (await page.textContent("[data-testid=scan-error]")));
  const scene = (await page.textContent("[data-testid=scan-scene]")).trim();
  assert.match(scene, /^[A-Za-z0-9]{1,32}$/);
  if (!withQr) return scene;   // a pushed request has no QR
  const qr = await page.$eval("[data-testid=scan-qr]", (img) => ({ src: img.src.slice(0, 11), w: img.naturalWidth, ok: img.complete }));
  assert.equal(qr.src, "data:image/");
  assert.ok(qr.ok && qr.w > 0, "the QR image loaded");
  return scene;
}

// Binds WeChat from the settings page with the phone (图 2-6-1 → 2-6-4).
export async function bindWechat(page, phone, shot) {
  await page.click("#bind-wechat");
  await page.waitForSelector("#wx-bind-dialog");
  const scene = await scanScene(page);
  assert.equal((await page.textContent("#wx-bind-dialog .scan-hint")).trim(), "请打开【微信】扫码绑定");
  if (shot) await shot(page, "bind-wechat-qr");
  const req = await phone.show(scene);
  assert.equal(req.kind, "bind");
  await phone.answer(scene, "confirm");
  await page.waitForSelector("#wx-bind-dialog", { state: "detached" });
  await page.waitForSelector("#factor-wechat[data-bound='1']");
  assert.ok((await page.textContent("#toast")).includes("绑定成功"));
}

// A new browser context signed in as user (no factor yet) on base, with
// WeChat bound to phone: {ctx, page}, the page on the settings screen.
export async function withWechatBound(browser, user, phone, base = BASE) {
  const ctx = await newContext(browser);
  const page = await newPage(ctx);
  await open(page, "#/login", base);
  assert.equal(await signIn(page, user, USERS[user]), "ok");
  await bindWechat(page, phone);
  return { ctx, page };
}

// Switches the stand-in down (every WeChat API call answers HTTP 500, which
// mfagate counts as WeChat unreachable) or back up.
export async function wechatDown(down, base = STANDIN) {
  await standin("/_standin/fail", down ? { mode: "http500", count: 1000000 } : { mode: "none" }, base);
}
