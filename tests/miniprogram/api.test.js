"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { makeWx, lib, freshModules, startFakeServer, deadBase } = require("./harness");

let srv;
test.before(async () => { srv = await startFakeServer(); });
test.after(async () => { await srv.close(); });

// A clean mini program (modules, storage) talking to `base`.
function fresh(base, wxOpts) {
  const wx = makeWx(wxOpts);
  global.wx = wx;
  freshModules();
  lib("config").baseUrl = base;
  return { wx, api: lib("api") };
}

test("login: wx.login code -> POST /api/mp/login -> bearer token in storage", async () => {
  const { wx, api } = fresh(srv.base, { loginCodes: ["wxcode-1"] });
  srv.log.length = 0;
  const token = await api.login();
  assert.match(token, /^tok\d+$/);
  assert.deepEqual(srv.log[0], ["POST", "/api/mp/login", null, { code: "wxcode-1" }]);
  const stored = wx.getStorageSync(api.TOKEN_KEY);
  assert.equal(stored.token, token);
  assert.ok(stored.expiresAt > Date.now() + 7000 * 1000);
});

test("calls carry the token; no second login while it is good", async () => {
  const { wx, api } = fresh(srv.base);
  srv.accounts["openid-alice"] = [{ mailbox: "alice@example.com", secret: "JBSWY3DPEHPK3PXP",
                                    digits: 6, period: 30, algorithm: "SHA1" }];
  srv.log.length = 0;
  const list = await api.getAccounts();
  assert.equal(list[0].mailbox, "alice@example.com");
  await api.getAccounts();
  assert.equal(wx.calls.filter((c) => c[0] === "login").length, 1);
  const tok = wx.getStorageSync(api.TOKEN_KEY).token;
  assert.deepEqual(srv.log.map((l) => [l[0], l[1], l[2]]), [
    ["POST", "/api/mp/login", null],
    ["GET", "/api/mp/accounts", "Bearer " + tok],
    ["GET", "/api/mp/accounts", "Bearer " + tok]
  ]);
  // the list is kept for offline codes
  assert.equal(api.cachedAccounts()[0].secret, "JBSWY3DPEHPK3PXP");
});

test("401 on a call: log in again once, retry once", async () => {
  const { wx, api } = fresh(srv.base);
  await api.login();
  const old = wx.getStorageSync(api.TOKEN_KEY).token;
  srv.tokens.delete(old);                      // the server forgot it (expiry, restart)
  srv.log.length = 0;
  await api.getAccounts();
  const now = wx.getStorageSync(api.TOKEN_KEY).token;
  assert.notEqual(now, old);
  assert.deepEqual(srv.log.map((l) => [l[0], l[1], l[2]]), [
    ["GET", "/api/mp/accounts", "Bearer " + old],
    ["POST", "/api/mp/login", null],
    ["GET", "/api/mp/accounts", "Bearer " + now]
  ]);
});

test("401 again after the fresh login: no loop, the error surfaces", async () => {
  const { wx, api } = fresh(srv.base);
  const origAdd = srv.tokens.add.bind(srv.tokens);
  srv.tokens.add = () => srv.tokens;           // tokens issued but never accepted
  try {
    srv.log.length = 0;
    await assert.rejects(api.getAccounts(), (e) => e.code === "unauthorized" && e.status === 401);
    assert.equal(srv.log.filter((l) => l[1] === "/api/mp/login").length, 1);
    assert.equal(srv.log.length, 2);
    assert.equal(wx.getStorageSync(api.TOKEN_KEY), "");
  } finally {
    srv.tokens.add = origAdd;
  }
});

test("a stored token that has expired by its expires_in is not sent", async () => {
  const { wx, api } = fresh(srv.base);
  wx.setStorageSync(api.TOKEN_KEY, { token: "tok-old", expiresAt: Date.now() - 1 });
  srv.log.length = 0;
  await api.getAccounts();
  assert.deepEqual(srv.log.map((l) => l[1]), ["/api/mp/login", "/api/mp/accounts"]);
});

test("concurrent calls share one login", async () => {
  const { wx, api } = fresh(srv.base);
  srv.log.length = 0;
  await Promise.all([api.getAccounts(), api.getAccounts(), api.getAccounts()]);
  assert.equal(wx.calls.filter((c) => c[0] === "login").length, 1);
  assert.equal(srv.log.filter((l) => l[1] === "/api/mp/login").length, 1);
});

test("login errors: WeChat down (503), bad code (401), wx.login failing", async () => {
  let { api } = fresh(srv.base);
  srv.wechatDown = true;
  try {
    await assert.rejects(api.getAccounts(), (e) => e.code === "wechat_unavailable" && e.status === 503);
  } finally { srv.wechatDown = false; }

  ({ api } = fresh(srv.base, { loginCodes: ["wxcode-bad"] }));
  await assert.rejects(api.login(), (e) => e.code === "bad_code" && e.status === 401);

  const f = fresh(srv.base);
  f.wx.loginFails = true;
  await assert.rejects(f.api.getAccounts(), (e) => e.code === "wechat_login");
});

test("mfagate unreachable: code network", async () => {
  const { api } = fresh(await deadBase());
  await assert.rejects(api.getAccounts(), (e) => e.code === "network" && e.status === 0);
});

test("scene and answer are checked before anything is sent", async () => {
  const { wx, api } = fresh(srv.base);
  await assert.rejects(api.getRequest("../accounts"), (e) => e.code === "bad_scene");
  await assert.rejects(api.answer("Ab12", "yes"), (e) => e.code === "bad_answer");
  assert.equal(wx.calls.filter((c) => c[0] === "request").length, 0);
});
