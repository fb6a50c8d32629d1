// api.js - the mini program's side of /api/mp/ (web/API.md, "The mini
// program").  Every call returns a Promise; a failure rejects with an
// ApiError whose `code` is the server's error code ("expired",
// "wrong_account", "wechat_unavailable", "bad_code", ...) or one of the
// client's own: "network" (mfagate not reachable), "wechat_login" (wx.login
// failed on the phone), "server" (an answer that is not the contract's).
//
// The session is a bearer token from POST /api/mp/login, kept with
// wx.setStorageSync.  A 401 on any other call means the token is gone
// (expired, revoked, server restarted): log in again once and retry once.
"use strict";
var config = require("./config");
var clock = require("./clock");

var TOKEN_KEY = "mfagate.mp.token";
var ACCOUNTS_KEY = "mfagate.mp.accounts";

function ApiError(code, status, message) {
  this.name = "ApiError";
  this.code = code;
  this.status = status || 0;
  this.message = message || code;
}
ApiError.prototype = Object.create(Error.prototype);
ApiError.prototype.constructor = ApiError;

function loadToken() {
  var t;
  try { t = wx.getStorageSync(TOKEN_KEY); } catch (e) { return null; }
  if (!t || typeof t.token !== "string" || !t.token) return null;
  if (typeof t.expiresAt === "number" && t.expiresAt <= clock.now()) return null;
  return t.token;
}

function saveToken(token, expiresIn) {
  var rec = { token: token };
  if (typeof expiresIn === "number" && expiresIn > 0) {
    // a minute's margin, so a call does not start with a token about to die
    rec.expiresAt = clock.now() + Math.max(expiresIn - 60, 1) * 1000;
  }
  wx.setStorageSync(TOKEN_KEY, rec);
}

function clearToken() {
  try { wx.removeStorageSync(TOKEN_KEY); } catch (e) { /* nothing stored */ }
}

// One HTTP exchange: resolves {status, data}; rejects only when the server
// was not reached (ApiError "network").
function rawRequest(method, path, body, token) {
  return new Promise(function (resolve, reject) {
    var header = { "Accept": "application/json" };
    if (method !== "GET") header["Content-Type"] = "application/json";
    if (token) header["Authorization"] = "Bearer " + token;
    var opts = {
      url: config.baseUrl + path,
      method: method,
      header: header,
      dataType: "json",
      timeout: config.requestTimeoutMs,
      success: function (res) { resolve({ status: res.statusCode, data: res.data }); },
      fail: function (err) {
        reject(new ApiError("network", 0, (err && err.errMsg) || "request failed"));
      }
    };
    if (method !== "GET") opts.data = body || {};
    wx.request(opts);
  });
}

function errorFrom(res) {
  var d = res.data;
  if (d && typeof d === "object" && typeof d.error === "string") {
    return new ApiError(d.error, res.status, d.message || d.error);
  }
  return new ApiError("server", res.status, "HTTP " + res.status);
}

function wxLogin() {
  return new Promise(function (resolve, reject) {
    wx.login({
      success: function (r) {
        if (r && r.code) resolve(r.code);
        else reject(new ApiError("wechat_login", 0, (r && r.errMsg) || "wx.login gave no code"));
      },
      fail: function (err) {
        reject(new ApiError("wechat_login", 0, (err && err.errMsg) || "wx.login failed"));
      }
    });
  });
}

var pendingLogin = null;

// wx.login -> POST /api/mp/login {code} -> the token, stored.  Concurrent
// callers share one login.
function login() {
  if (pendingLogin) return pendingLogin;
  pendingLogin = wxLogin().then(function (code) {
    return rawRequest("POST", "/api/mp/login", { code: code }, null);
  }).then(function (res) {
    if (res.status !== 200) throw errorFrom(res);
    var d = res.data;
    if (!d || typeof d.token !== "string" || !d.token) {
      throw new ApiError("server", res.status, "login answer without a token");
    }
    saveToken(d.token, d.expires_in);
    return d.token;
  });
  var done = function () { pendingLogin = null; };
  pendingLogin.then(done, done);
  return pendingLogin;
}

// A call with the bearer token; on 401, one fresh login and one retry.
function call(method, path, body) {
  var token = loadToken();
  var first = token ? Promise.resolve(token) : login();
  var relogged = !token;
  return first.then(function (tok) {
    return rawRequest(method, path, body, tok);
  }).then(function (res) {
    if (res.status === 401 && !relogged) {
      clearToken();
      return login().then(function (tok) {
        return rawRequest(method, path, body, tok);
      });
    }
    return res;
  }).then(function (res) {
    if (res.status === 401) clearToken();
    if (res.status < 200 || res.status > 299) throw errorFrom(res);
    return res.data;
  });
}

function checkScene(scene) {
  if (typeof scene !== "string" || !/^[A-Za-z0-9]{1,32}$/.test(scene)) {
    return Promise.reject(new ApiError("bad_scene", 0, "not a scene"));
  }
  return null;
}

// GET /api/mp/accounts -> [{mailbox, secret, digits, period, algorithm}];
// the list is also kept in storage so that the codes work offline.
function getAccounts() {
  return call("GET", "/api/mp/accounts").then(function (d) {
    if (!d || !Array.isArray(d.accounts)) {
      throw new ApiError("server", 200, "accounts answer without a list");
    }
    wx.setStorageSync(ACCOUNTS_KEY, { accounts: d.accounts, fetchedAt: clock.now() });
    return d.accounts;
  });
}

function cachedAccounts() {
  var c;
  try { c = wx.getStorageSync(ACCOUNTS_KEY); } catch (e) { return []; }
  return c && Array.isArray(c.accounts) ? c.accounts : [];
}

// GET /api/mp/requests/<scene> -> {kind, mailbox, addr, time, expires}
function getRequest(scene) {
  return checkScene(scene) || call("GET", "/api/mp/requests/" + scene);
}

var ANSWERS = { trust: 1, temporary: 1, deny: 1, confirm: 1 };

// POST /api/mp/requests/<scene> {answer} -> {ok: true}
function answer(scene, ans) {
  if (!ANSWERS[ans]) return Promise.reject(new ApiError("bad_answer", 0, "unknown answer"));
  return checkScene(scene) || call("POST", "/api/mp/requests/" + scene, { answer: ans })
    .then(function (d) {
      if (!d || d.ok !== true) throw new ApiError("server", 200, "answer not acknowledged");
      return d;
    });
}

module.exports = {
  ApiError: ApiError,
  login: login,
  getAccounts: getAccounts,
  cachedAccounts: cachedAccounts,
  getRequest: getRequest,
  answer: answer,
  clearToken: clearToken,
  TOKEN_KEY: TOKEN_KEY,
  ACCOUNTS_KEY: ACCOUNTS_KEY
};
