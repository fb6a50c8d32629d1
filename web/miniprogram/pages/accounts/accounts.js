// The bound mailboxes with their current codes (the manual's 图 2-6-3 right,
// 图 2-7-4 right), and the scan button.  The logic lives in ../../lib/.
"use strict";
var api = require("../../lib/api");
var totp = require("../../lib/totp");
var scene = require("../../lib/scene");
var clock = require("../../lib/clock");
var i18n = require("../../lib/i18n");

// What the page shows for the accounts at `nowMs`.
function view(accounts, nowMs) {
  return accounts.map(function (a) {
    var period = a.period > 0 ? a.period : 30;
    var digits = a.digits > 0 ? a.digits : 6;
    var supported = !a.algorithm || String(a.algorithm).toUpperCase() === "SHA1";
    var r = null;
    if (supported) {
      try { r = totp.totp(a.secret, nowMs, { period: period, digits: digits }); }
      catch (e) { r = null; }
    }
    if (!r) {
      return { mailbox: a.mailbox, code: "", ok: false, remaining: 0, percent: 0,
               secondsText: "", note: i18n.t("unsupported") };
    }
    return {
      mailbox: a.mailbox,
      code: r.code,
      ok: true,
      remaining: r.remaining,
      percent: Math.round(r.remaining * 100 / period),
      secondsText: i18n.t("secondsLeft", { n: r.remaining }),
      warn: r.remaining <= 5,
      note: ""
    };
  });
}

Page({
  data: {
    accounts: [],
    loading: true,
    offline: false,
    error: "",
    w: {}
  },

  onLoad: function () {
    this.list = api.cachedAccounts();
    this._timer = null;
    var w = {};
    ["scan", "empty", "codeHint", "offline", "retry"].forEach(function (k) { w[k] = i18n.t(k); });
    this.setData({ w: w });
    if (typeof wx.setNavigationBarTitle === "function") {
      wx.setNavigationBarTitle({ title: i18n.t("accountsTitle") });
    }
    this.tick();
  },

  onShow: function () {
    this.startTimer();
    return this.refresh();
  },

  onHide: function () { this.stopTimer(); },
  onUnload: function () { this.stopTimer(); },

  startTimer: function () {
    var self = this;
    if (this._timer) return;
    this._timer = setInterval(function () { self.tick(); }, 1000);
  },

  stopTimer: function () {
    if (this._timer) { clearInterval(this._timer); this._timer = null; }
  },

  // Once a second: the codes and the countdown, from the secrets, offline.
  tick: function () {
    this.setData({ accounts: view(this.list || [], clock.now()) });
  },

  // Fetches the list from mfagate; when that fails the cached list stays.
  refresh: function () {
    var self = this;
    return api.getAccounts().then(function (list) {
      self.list = list;
      self.setData({ offline: false, error: "" });
    }, function (err) {
      var cached = (self.list || []).length > 0;
      self.setData({
        offline: cached && err.code === "network",
        error: cached && err.code === "network" ? "" : i18n.errorText(err)
      });
    }).then(function () {
      self.setData({ loading: false });
      self.tick();
      if (typeof wx.stopPullDownRefresh === "function") wx.stopPullDownRefresh();
    });
  },

  onPullDownRefresh: function () { return this.refresh(); },

  onRetry: function () { return this.refresh(); },

  // wx.scanCode -> the scene -> the confirm page.
  onScan: function () {
    return new Promise(function (resolve) {
      wx.scanCode({
        onlyFromCamera: false,
        scanType: ["qrCode", "wxCode"],
        success: function (res) {
          var s = scene.fromScanResult(res);
          if (!s) {
            wx.showModal({ title: i18n.t("appName"), content: i18n.t("err_bad_scene"),
                           showCancel: false });
            resolve(null);
            return;
          }
          wx.navigateTo({ url: "/pages/confirm/confirm?scene=" + s });
          resolve(s);
        },
        // the user closed the scanner: nothing to say
        fail: function () { resolve(null); }
      });
    });
  },

  // Tap on a code: copy it, for pasting into the web page on the same phone.
  onCopy: function (e) {
    var code = e && e.currentTarget && e.currentTarget.dataset && e.currentTarget.dataset.code;
    if (!code) return;
    wx.setClipboardData({ data: code });
  }
});
