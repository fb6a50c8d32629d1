// "您的邮箱 … 正在请求验证，是否确认该操作？" (图 2-7-3, 3-5-3, 3-6-3).
// Opened by the accounts page's scan (?scene=), by WeChat's scanner on a
// mini-program code (options.scene) or on the https://HOST/mp?scene= link
// (options.q).  The logic lives in ../../lib/.
"use strict";
var api = require("../../lib/api");
var scene = require("../../lib/scene");
var i18n = require("../../lib/i18n");

var KINDS = { signin: 1, bind: 1, unbind: 1, change: 1 };

// The buttons for a request kind: sign-in offers trust / temporary / cancel,
// the others confirm / cancel.  "cancel" answers "deny", so that the waiting
// browser learns it at once.
function buttonsFor(kind) {
  if (kind === "signin") {
    return [
      { answer: "trust", text: i18n.t("trust"), type: "primary" },
      { answer: "temporary", text: i18n.t("temporary"), type: "default" },
      { answer: "deny", text: i18n.t("cancel"), type: "default" }
    ];
  }
  return [
    { answer: "confirm", text: i18n.t("confirm"), type: "primary" },
    { answer: "deny", text: i18n.t("cancel"), type: "default" }
  ];
}

Page({
  data: {
    state: "loading",      // loading | ready | sending | done | error
    kind: "",
    kindText: "",
    text: "",
    addrText: "",
    timeText: "",
    buttons: [],
    doneText: "",
    answer: "",
    errorCode: "",
    errorText: "",
    canRetry: false,
    w: {}
  },

  onLoad: function (options) {
    this.scene = scene.fromLaunchOptions(options || {});
    this.req = null;
    var w = {};
    ["loading", "sending", "back", "retry", "errTitle"].forEach(function (k) { w[k] = i18n.t(k); });
    this.setData({ w: w });
    if (typeof wx.setNavigationBarTitle === "function") {
      wx.setNavigationBarTitle({ title: i18n.t("confirmTitle") });
    }
    if (!this.scene) {
      this.fail({ code: "bad_scene" });
      return Promise.resolve();
    }
    return this.load();
  },

  load: function () {
    var self = this;
    this.setData({ state: "loading", errorCode: "", errorText: "" });
    return api.getRequest(this.scene).then(function (req) {
      if (!req || !KINDS[req.kind] || typeof req.mailbox !== "string") {
        throw new api.ApiError("server", 200, "request of an unknown kind");
      }
      self.req = req;
      self.setData({
        state: "ready",
        kind: req.kind,
        kindText: i18n.t("kind_" + req.kind),
        text: i18n.t("confirmText", { mailbox: req.mailbox }),
        addrText: req.addr ? i18n.t("from", { addr: req.addr }) : "",
        timeText: typeof req.time === "number" ? i18n.t("at", { time: i18n.formatTime(req.time) }) : "",
        buttons: buttonsFor(req.kind)
      });
    }).catch(function (err) { self.fail(err); });
  },

  fail: function (err) {
    var code = (err && err.code) || "other";
    this.setData({
      state: "error",
      errorCode: code,
      errorText: i18n.errorText(err),
      // a dead, answered or foreign QR code does not come back by trying again
      canRetry: ["expired", "wrong_account", "bad_scene", "answered", "already_bound"].indexOf(code) < 0
    });
  },

  // A button: data-answer is trust | temporary | confirm | deny.
  onAnswer: function (e) {
    var self = this;
    var ans = e && e.currentTarget && e.currentTarget.dataset && e.currentTarget.dataset.answer;
    if (this.data.state !== "ready" || !this.req) return Promise.resolve();
    var allowed = buttonsFor(this.req.kind).some(function (b) { return b.answer === ans; });
    if (!allowed) return Promise.resolve();
    this.setData({ state: "sending" });
    return api.answer(this.scene, ans).then(function () {
      var key = ans === "deny" ? "done_deny"
        : self.req.kind === "bind" ? "done_bind"
        : ans === "confirm" ? "done_confirm" : "done_" + ans;
      self.setData({ state: "done", doneText: i18n.t(key), answer: ans });
    }).catch(function (err) { self.fail(err); });
  },

  onRetry: function () {
    if (!this.scene) return Promise.resolve();
    return this.load();
  },

  onBack: function () {
    wx.navigateBack({
      delta: 1,
      fail: function () { wx.reLaunch({ url: "/pages/accounts/accounts" }); }
    });
  }
});
