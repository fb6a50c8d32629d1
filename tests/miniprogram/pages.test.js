"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { MP, makeWx, loadPage, lib, tap, startFakeServer, deadBase, boundHandlers } = require("./harness");

const RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";   // "12345678901234567890"
let srv;
test.before(async () => { srv = await startFakeServer(); });
test.after(async () => { await srv.close(); });

// A page of a fresh mini program talking to `base`, the clock at `nowMs`.
function open(route, base, opts) {
  opts = opts || {};
  const wx = makeWx(opts);
  const page = loadPage(wx, route);
  lib("config").baseUrl = base;
  if (opts.nowMs != null) lib("clock").now = () => opts.nowMs;
  return { wx, page, clock: lib("clock") };
}

let sceneN = 0;
function addScene(kind, extra) {
  const id = "Sc" + (++sceneN) + "x" + kind;
  srv.scenes.set(id, Object.assign({ kind, mailbox: "alice@example.com", addr: "203.0.113.7",
    time: Math.floor(Date.now() / 1000) - 3, expires: Math.floor(Date.now() / 1000) + 300 }, extra));
  return id;
}

test("the app: app.json's pages exist with .js/.json/.wxml/.wxss, and every bound handler exists", () => {
  const app = JSON.parse(fs.readFileSync(path.join(MP, "app.json"), "utf8"));
  assert.deepEqual(app.pages, ["pages/accounts/accounts", "pages/confirm/confirm"]);
  for (const p of app.pages) {
    for (const ext of [".js", ".json", ".wxml", ".wxss"]) {
      assert.ok(fs.existsSync(path.join(MP, p + ext)), p + ext);
    }
    const { page } = open(p, "http://127.0.0.1:1");
    for (const h of boundHandlers(p)) assert.equal(typeof page[h], "function", p + " " + h);
  }
  for (const f of ["app.js", "app.wxss", "project.config.json", "sitemap.json"]) {
    assert.ok(fs.existsSync(path.join(MP, f)), f);
  }
  assert.ok(JSON.parse(fs.readFileSync(path.join(MP, "project.config.json"), "utf8")).appid);
});

test("accounts: the RFC 6238 secret at T=59 shows 287082 with 1 s left", async () => {
  srv.accounts["openid-alice"] = [
    { mailbox: "alice@example.com", secret: RFC_SECRET, digits: 6, period: 30, algorithm: "SHA1" },
    { mailbox: "bob@example.com", secret: "JBSWY3DPEHPK3PXP", digits: 6, period: 30, algorithm: "SHA1" }
  ];
  const { page, clock } = open("pages/accounts/accounts", srv.base, { nowMs: 59000 });
  page.onLoad({});
  await page.onShow();
  page.onHide();
  const a = page.data.accounts;
  assert.equal(a.length, 2);
  assert.equal(a[0].mailbox, "alice@example.com");
  assert.equal(a[0].code, "287082");
  assert.equal(a[0].remaining, 1);
  assert.equal(a[0].percent, 3);
  assert.equal(a[0].secondsText, "1 秒");
  assert.equal(a[0].warn, true);
  assert.equal(a[1].code, lib("totp").totp("JBSWY3DPEHPK3PXP", 59000).code);
  assert.equal(page.data.loading, false);
  assert.equal(page.data.error, "");

  // the countdown: one tick per second, a new code at the period boundary
  clock.now = () => 60000;
  page.tick();
  assert.equal(page.data.accounts[0].remaining, 30);
  assert.equal(page.data.accounts[0].percent, 100);
  assert.notEqual(page.data.accounts[0].code, "287082");
  clock.now = () => 1111111109000;
  page.tick();
  assert.equal(page.data.accounts[0].code, "081804");
  assert.equal(page.data.accounts[0].remaining, 1);
});

test("accounts: a timer ticks every second while shown, and stops when hidden", async () => {
  srv.accounts["openid-alice"] = [{ mailbox: "alice@example.com", secret: RFC_SECRET, digits: 6, period: 30 }];
  const { page } = open("pages/accounts/accounts", srv.base);
  page.onLoad({});
  await page.onShow();
  assert.ok(page._timer);
  const before = page.setDataCalls.length;
  await new Promise((r) => setTimeout(r, 2200));
  const ticks = page.setDataCalls.slice(before).filter((c) => "accounts" in c).length;
  assert.ok(ticks >= 2 && ticks <= 3, "ticks: " + ticks);
  page.onHide();
  assert.equal(page._timer, null);
  const n = page.setDataCalls.length;
  await new Promise((r) => setTimeout(r, 1100));
  assert.equal(page.setDataCalls.length, n);
});

test("accounts: offline, the cached secrets still give codes", async () => {
  const { wx, page } = open("pages/accounts/accounts", await deadBase(), { nowMs: 59000 });
  wx.setStorageSync(lib("api").ACCOUNTS_KEY, {
    accounts: [{ mailbox: "alice@example.com", secret: RFC_SECRET, digits: 6, period: 30, algorithm: "SHA1" }] });
  page.onLoad({});
  await page.onShow();
  page.onHide();
  assert.equal(page.data.accounts[0].code, "287082");
  assert.equal(page.data.offline, true);
  assert.equal(page.data.error, "");
});

test("accounts: unreachable with nothing cached, or WeChat down: words, not codes", async () => {
  let { page } = open("pages/accounts/accounts", await deadBase());
  page.onLoad({}); await page.onShow(); page.onHide();
  assert.equal(page.data.error, "无法连接邮箱服务器，请检查网络后重试。");
  assert.deepEqual(page.data.accounts, []);

  ({ page } = open("pages/accounts/accounts", srv.base, { language: "en" }));
  srv.wechatDown = true;
  try { page.onLoad({}); await page.onShow(); page.onHide(); } finally { srv.wechatDown = false; }
  assert.equal(page.data.error, "WeChat's server can't be reached right now. Try again shortly.");
});

test("accounts: an unsupported algorithm is said, not computed wrongly", async () => {
  srv.accounts["openid-alice"] = [{ mailbox: "c@example.com", secret: RFC_SECRET, digits: 6, period: 30, algorithm: "SHA256" }];
  const { page } = open("pages/accounts/accounts", srv.base, { nowMs: 59000 });
  page.onLoad({}); await page.onShow(); page.onHide();
  assert.equal(page.data.accounts[0].ok, false);
  assert.equal(page.data.accounts[0].code, "");
});

test("accounts: scan -> the confirm page for the scene; a foreign QR -> a modal; cancel -> nothing", async () => {
  const { wx, page } = open("pages/accounts/accounts", srv.base);
  page.onLoad({});
  wx.scanCode.next = { scanType: "QR_CODE", result: "https://mail.example.com/mp?scene=Ab12" };
  assert.equal(await page.onScan(), "Ab12");
  assert.deepEqual(wx.calls.find((c) => c[0] === "navigateTo"), ["navigateTo", "/pages/confirm/confirm?scene=Ab12"]);
  const sc = wx.calls.find((c) => c[0] === "scanCode")[1];
  assert.deepEqual(sc.scanType, ["qrCode", "wxCode"]);

  wx.scanCode.next = { scanType: "WX_CODE", path: "pages/confirm/confirm?scene=Wx7" };
  assert.equal(await page.onScan(), "Wx7");

  wx.scanCode.next = { scanType: "QR_CODE", result: "https://evil.example/login?scene=Ab12" };
  assert.equal(await page.onScan(), null);
  const modal = wx.calls.find((c) => c[0] === "showModal");
  assert.equal(modal[1].content, "这不是邮箱安全助手的二维码。");

  wx.scanCode.next = { fail: true };
  const navs = wx.calls.filter((c) => c[0] === "navigateTo").length;
  assert.equal(await page.onScan(), null);
  assert.equal(wx.calls.filter((c) => c[0] === "navigateTo").length, navs);

  page.onCopy(tap({ code: "287082" }));
  assert.deepEqual(wx.calls.at(-1), ["setClipboardData", "287082"]);
});

// confirm: each kind's buttons, and each button's POST body
const CASES = [
  ["signin", ["trust", "temporary", "deny"], ["确认授权并信任此设备", "临时登录", "取消"]],
  ["unbind", ["confirm", "deny"], ["确认", "取消"]],
  ["change", ["confirm", "deny"], ["确认", "取消"]],
  ["bind", ["confirm", "deny"], ["确认", "取消"]]
];
for (const [kind, answers, texts] of CASES) {
  for (const ans of answers) {
    test(`confirm: ${kind} -> button ${ans} POSTs {"answer":"${ans}"}`, async () => {
      const scene = addScene(kind);
      const { page } = open("pages/confirm/confirm", srv.base);
      await page.onLoad({ scene });
      assert.equal(page.data.state, "ready");
      assert.equal(page.data.text, "您的邮箱 alice@example.com 正在请求验证，是否确认该操作？");
      assert.equal(page.data.addrText, "请求来源：203.0.113.7");
      assert.match(page.data.timeText, /^请求时间：\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
      assert.deepEqual(page.data.buttons.map((b) => b.answer), answers);
      assert.deepEqual(page.data.buttons.map((b) => b.text), texts);
      srv.log.length = 0;
      await page.onAnswer(tap({ answer: ans }));
      assert.equal(page.data.state, "done");
      const posts = srv.log.filter((l) => l[0] === "POST" && l[1].startsWith("/api/mp/requests/"));
      assert.equal(posts.length, 1);
      assert.equal(posts[0][1], "/api/mp/requests/" + scene);
      assert.match(posts[0][2], /^Bearer tok\d+$/);
      assert.deepEqual(posts[0][3], { answer: ans });
      assert.equal(srv.scenes.get(scene).answered, ans);
      // a second tap does nothing
      await page.onAnswer(tap({ answer: ans }));
      assert.equal(srv.log.filter((l) => l[0] === "POST").length, 1);
    });
  }
}

test("confirm: a button not offered for the kind is never sent", async () => {
  const scene = addScene("unbind");
  const { page } = open("pages/confirm/confirm", srv.base);
  await page.onLoad({ scene });
  srv.log.length = 0;
  await page.onAnswer(tap({ answer: "trust" }));
  assert.equal(page.data.state, "ready");
  assert.equal(srv.log.length, 0);
});

test("confirm: English words follow the phone's language", async () => {
  const scene = addScene("signin");
  const { page } = open("pages/confirm/confirm", srv.base, { language: "en_US" });
  await page.onLoad({ scene });
  assert.equal(page.data.text, "Your mailbox alice@example.com is asking for verification. Approve?");
  assert.deepEqual(page.data.buttons.map((b) => b.text),
    ["Approve and trust this device", "Sign in this time only", "Cancel"]);
});

test("confirm: opened by WeChat's scanner with q= (the https link)", async () => {
  const scene = addScene("signin");
  const { page } = open("pages/confirm/confirm", srv.base);
  await page.onLoad({ q: encodeURIComponent("https://mail.example.com/mp?scene=" + scene) });
  assert.equal(page.data.state, "ready");
});

test("confirm: expired QR", async () => {
  const scene = addScene("signin", { expires: Math.floor(Date.now() / 1000) - 1 });
  const { page } = open("pages/confirm/confirm", srv.base);
  await page.onLoad({ scene });
  assert.equal(page.data.state, "error");
  assert.equal(page.data.errorCode, "expired");
  assert.equal(page.data.errorText, "二维码已失效或已被使用。请在网页上刷新二维码后重新扫码。");
  assert.equal(page.data.canRetry, false);
  // unknown scene: the same
  const p2 = open("pages/confirm/confirm", srv.base).page;
  await p2.onLoad({ scene: "NoSuchScene" });
  assert.equal(p2.data.errorCode, "expired");
});

test("confirm: a scene answered meanwhile (410 on POST) shows expired", async () => {
  const scene = addScene("signin");
  const { page } = open("pages/confirm/confirm", srv.base);
  await page.onLoad({ scene });
  srv.scenes.get(scene).answered = "deny";     // e.g. answered from another phone
  await page.onAnswer(tap({ answer: "trust" }));
  assert.equal(page.data.state, "error");
  assert.equal(page.data.errorCode, "expired");
});

test("confirm: a bind whose mailbox was bound meanwhile: told so, no retry", async () => {
  const scene = addScene("bind", { postError: { status: 409, error: "already_bound" } });
  const { page } = open("pages/confirm/confirm", srv.base);
  await page.onLoad({ scene });
  assert.equal(page.data.state, "ready");
  await page.onAnswer(tap({ answer: "confirm" }));
  assert.equal(page.data.state, "error");
  assert.equal(page.data.errorCode, "already_bound");
  assert.equal(page.data.errorText, "该邮箱的微信绑定已在别处更改，未能绑定。请在网页上重新开始。");
  assert.equal(page.data.canRetry, false);
});

test("confirm: wrong account", async () => {
  const scene = addScene("signin", { owner: "openid-bob" });
  const { page } = open("pages/confirm/confirm", srv.base);
  await page.onLoad({ scene });
  assert.equal(page.data.state, "error");
  assert.equal(page.data.errorCode, "wrong_account");
  assert.equal(page.data.errorText, "该邮箱绑定的是另一个微信号。请使用绑定该邮箱的微信扫码。");
  assert.equal(page.data.canRetry, false);
});

test("confirm: server unreachable, then back: retry works", async () => {
  const scene = addScene("signin");
  const { page } = open("pages/confirm/confirm", await deadBase());
  await page.onLoad({ scene });
  assert.equal(page.data.state, "error");
  assert.equal(page.data.errorCode, "network");
  assert.equal(page.data.errorText, "无法连接邮箱服务器，请检查网络后重试。");
  assert.equal(page.data.canRetry, true);
  lib("config").baseUrl = srv.base;
  await page.onRetry();
  assert.equal(page.data.state, "ready");
});

test("confirm: WeChat unreachable at login", async () => {
  const scene = addScene("signin");
  const { page } = open("pages/confirm/confirm", srv.base);
  srv.wechatDown = true;
  try { await page.onLoad({ scene }); } finally { srv.wechatDown = false; }
  assert.equal(page.data.errorCode, "wechat_unavailable");
  assert.equal(page.data.errorText, "暂时无法连接微信服务器，请稍后重试。");
  assert.equal(page.data.canRetry, true);
});

test("confirm: not a scene -> no request at all", async () => {
  const { wx, page } = open("pages/confirm/confirm", srv.base);
  await page.onLoad({ scene: "../../api/me" });
  assert.equal(page.data.errorCode, "bad_scene");
  assert.equal(wx.calls.filter((c) => c[0] === "request").length, 0);
});

test("confirm: a token the server forgot -> one re-login, the answer still goes through", async () => {
  const scene = addScene("unbind");
  const { wx, page } = open("pages/confirm/confirm", srv.base);
  await page.onLoad({ scene });
  const api = lib("api");
  srv.tokens.delete(wx.getStorageSync(api.TOKEN_KEY).token);
  srv.log.length = 0;
  await page.onAnswer(tap({ answer: "confirm" }));
  assert.equal(page.data.state, "done");
  assert.deepEqual(srv.log.map((l) => [l[0], l[1].replace(scene, "S"), l[3]]), [
    ["POST", "/api/mp/requests/S", { answer: "confirm" }],
    ["POST", "/api/mp/login", { code: "wxcode-ok" }],
    ["POST", "/api/mp/requests/S", { answer: "confirm" }]
  ]);
  assert.equal(srv.scenes.get(scene).answered, "confirm");
});

test("confirm: back goes back (or to the accounts page when opened directly)", () => {
  const { wx, page } = open("pages/confirm/confirm", srv.base);
  page.onBack();
  const nb = wx.calls.find((c) => c[0] === "navigateBack")[1];
  nb.fail();
  assert.deepEqual(wx.calls.at(-1), ["reLaunch", "/pages/accounts/accounts"]);
});
