// harness.js - runs the mini program's code under node: a stand-in `wx`,
// a loader that evaluates Page({...}) definitions, and a fake /api/mp server
// that follows web/API.md ("The mini program") - only there to drive the
// client's code paths; the real server side is built later.
"use strict";
const http = require("node:http");
const path = require("node:path");
const fs = require("node:fs");

const MP = path.resolve(__dirname, "../../web/miniprogram");

// ---- the stand-in wx ----------------------------------------------------

function makeWx(opts) {
  opts = opts || {};
  const storage = new Map();
  const calls = [];
  const wx = {
    calls,
    storage,
    language: opts.language || "zh_CN",
    loginCodes: opts.loginCodes || null,   // list of codes wx.login hands out, in order
    loginFails: false,
    scanResult: null,                      // what wx.scanCode answers, or {fail: true}
    getSystemInfoSync() { return { language: wx.language, platform: "devtools" }; },
    login(o) {
      calls.push(["login"]);
      setImmediate(() => {
        if (wx.loginFails) return o.fail && o.fail({ errMsg: "login:fail" });
        const code = wx.loginCodes && wx.loginCodes.length ? wx.loginCodes.shift() : "wxcode-ok";
        o.success && o.success({ code, errMsg: "login:ok" });
      });
    },
    request(o) {
      calls.push(["request", o.method || "GET", o.url, o.data]);
      const u = new URL(o.url);
      const body = o.method && o.method !== "GET" && o.data !== undefined
        ? (typeof o.data === "string" ? o.data : JSON.stringify(o.data)) : null;
      const headers = Object.assign({}, o.header || {});
      if (body != null) headers["Content-Length"] = Buffer.byteLength(body);
      const req = http.request({
        host: u.hostname, port: u.port, path: u.pathname + u.search,
        method: o.method || "GET", headers
      }, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          let data = Buffer.concat(chunks).toString("utf8");
          // like WeChat with dataType "json": parse when it parses
          if (o.dataType !== "text") { try { data = JSON.parse(data); } catch (e) { /* as text */ } }
          o.success && o.success({ statusCode: res.statusCode, data, header: res.headers });
          o.complete && o.complete();
        });
      });
      req.setTimeout(o.timeout || 5000, () => req.destroy(new Error("timeout")));
      req.on("error", (e) => {
        o.fail && o.fail({ errMsg: "request:fail " + e.message });
        o.complete && o.complete();
      });
      if (body != null) req.write(body);
      req.end();
    },
    scanCode(o) {
      calls.push(["scanCode", o]);
      setImmediate(() => {
        const r = wx.scanCode.next || { fail: true };
        if (r.fail) o.fail && o.fail({ errMsg: "scanCode:fail cancel" });
        else o.success && o.success(Object.assign({ errMsg: "scanCode:ok" }, r));
      });
    },
    setStorageSync(k, v) { storage.set(k, JSON.parse(JSON.stringify(v))); },
    getStorageSync(k) { return storage.has(k) ? JSON.parse(JSON.stringify(storage.get(k))) : ""; },
    removeStorageSync(k) { storage.delete(k); },
    showModal(o) { calls.push(["showModal", o]); o.success && o.success({ confirm: true }); },
    showToast(o) { calls.push(["showToast", o]); },
    navigateTo(o) { calls.push(["navigateTo", o.url]); o.success && o.success({}); },
    navigateBack(o) { calls.push(["navigateBack", o]); o.success && o.success({}); },
    reLaunch(o) { calls.push(["reLaunch", o.url]); },
    setClipboardData(o) { calls.push(["setClipboardData", o.data]); },
    setNavigationBarTitle(o) { calls.push(["setNavigationBarTitle", o.title]); },
    stopPullDownRefresh() { calls.push(["stopPullDownRefresh"]); }
  };
  return wx;
}

// ---- the loader ---------------------------------------------------------

// Forget every module of the mini program, so each test starts clean.
function freshModules() {
  for (const k of Object.keys(require.cache)) {
    if (k.startsWith(MP + path.sep)) delete require.cache[k];
  }
}

// A path "a.b[2].c" of setData onto an object.
function setPath(obj, key, value) {
  const parts = key.replace(/\[(\d+)\]/g, ".$1").split(".");
  let o = obj;
  for (let i = 0; i < parts.length - 1; i++) {
    if (o[parts[i]] == null) o[parts[i]] = /^\d+$/.test(parts[i + 1]) ? [] : {};
    o = o[parts[i]];
  }
  o[parts[parts.length - 1]] = value;
}

// Installs `wx` and the globals a mini program sees, evaluates the page's
// .js, and returns an instance: its data, setData (recorded), handlers.
function loadPage(wx, route) {
  global.wx = wx;
  let def = null;
  global.Page = (d) => { def = d; };
  global.getApp = () => ({ globalData: {} });
  freshModules();
  require(path.join(MP, route + ".js"));
  if (!def) throw new Error(route + ".js did not call Page()");
  const page = Object.create(null);
  for (const [k, v] of Object.entries(def)) {
    page[k] = k === "data" ? JSON.parse(JSON.stringify(v)) : v;
  }
  page.route = route;
  page.setDataCalls = [];
  page.setData = function (patch, cb) {
    // WeChat copies the data (it crosses to the view layer as JSON)
    const copy = JSON.parse(JSON.stringify(patch));
    page.setDataCalls.push(copy);
    for (const [k, v] of Object.entries(copy)) setPath(page.data, k, v);
    if (cb) cb();
  };
  page.definition = def;
  return page;
}

// The lib modules as the pages see them (same module instances).
function lib(name) { return require(path.join(MP, "lib", name)); }

// An event object like WeChat's for bindtap with data-* attributes.
function tap(dataset) { return { type: "tap", currentTarget: { dataset }, target: { dataset } }; }

// ---- the fake /api/mp server (web/API.md) ------------------------------

function json(res, status, obj) {
  const b = JSON.stringify(obj);
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8",
                          "Content-Length": Buffer.byteLength(b) });
  res.end(b);
}

async function startFakeServer() {
  const st = {
    tokens: new Set(),
    issued: 0,
    wechatDown: false,
    badCodes: new Set(["wxcode-bad"]),
    openidOf: new Map(),          // token -> openid
    accounts: {},                 // openid -> [{mailbox, secret, digits, period, algorithm}]
    scenes: new Map(),            // scene -> {kind, mailbox, addr, time, expires, owner, answered, postError}
    log: []                       // [method, path, authorization, body]
  };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      const url = new URL(req.url, "http://x");
      let body = {};
      if (req.method === "POST") {
        if (!/^application\/json\b/.test(req.headers["content-type"] || "")) {
          return json(res, 415, { error: "unsupported_media_type", message: "JSON only" });
        }
        try { body = raw ? JSON.parse(raw) : {}; } catch (e) {
          return json(res, 400, { error: "bad_request", message: "bad JSON" });
        }
      }
      st.log.push([req.method, url.pathname, req.headers.authorization || null, body]);

      if (url.pathname === "/api/mp/login" && req.method === "POST") {
        if (typeof body.code !== "string") return json(res, 400, { error: "bad_request" });
        if (st.wechatDown) return json(res, 503, { error: "wechat_unavailable", message: "WeChat unreachable" });
        if (st.badCodes.has(body.code)) return json(res, 401, { error: "bad_code", message: "invalid code" });
        const token = "tok" + (++st.issued);
        st.tokens.add(token);
        st.openidOf.set(token, "openid-alice");
        return json(res, 200, { token, expires_in: 7200 });
      }
      const m = /^Bearer (\S+)$/.exec(req.headers.authorization || "");
      if (!m || !st.tokens.has(m[1])) return json(res, 401, { error: "unauthorized", message: "sign in" });
      const openid = st.openidOf.get(m[1]);

      if (url.pathname === "/api/mp/accounts" && req.method === "GET") {
        return json(res, 200, { accounts: st.accounts[openid] || [] });
      }
      const r = /^\/api\/mp\/requests\/([A-Za-z0-9]{1,32})$/.exec(url.pathname);
      if (r) {
        const sc = st.scenes.get(r[1]);
        if (!sc || sc.answered || sc.expires <= Date.now() / 1000) {
          return json(res, 410, { error: "expired", message: "expired" });
        }
        if (sc.owner && sc.owner !== openid) {
          return json(res, 403, { error: "wrong_account", message: "another WeChat account" });
        }
        if (req.method === "GET") {
          return json(res, 200, { kind: sc.kind, mailbox: sc.mailbox, addr: sc.addr,
                                  time: sc.time, expires: sc.expires });
        }
        if (req.method === "POST") {
          // postError: what mfagate answers when the answer cannot be used
          // (409 already_bound: the mailbox's binding changed meanwhile)
          if (sc.postError) return json(res, sc.postError.status, { error: sc.postError.error, message: "no" });
          const ok = sc.kind === "signin" ? ["trust", "temporary", "deny"] : ["confirm", "deny"];
          if (!ok.includes(body.answer)) return json(res, 400, { error: "bad_request" });
          sc.answered = body.answer;
          return json(res, 200, { ok: true });
        }
      }
      return json(res, 404, { error: "not_found" });
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  st.base = "http://127.0.0.1:" + server.address().port;
  st.close = () => new Promise((r) => server.close(r));
  return st;
}

// A base URL nothing listens on.
async function deadBase() {
  const s = http.createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return "http://127.0.0.1:" + port;
}

// Handlers a page's .wxml binds (bindtap="x", catchtap=...), and whether
// each exists in its Page definition.
function boundHandlers(route) {
  const wxml = fs.readFileSync(path.join(MP, route + ".wxml"), "utf8");
  const out = new Set();
  for (const m of wxml.matchAll(/\b(?:bind|catch)(?::)?\w+="(\w+)"/g)) out.add(m[1]);
  return [...out];
}

module.exports = { MP, makeWx, loadPage, lib, tap, startFakeServer, deadBase, boundHandlers, freshModules };
