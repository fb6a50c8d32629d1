// i18n.js - the mini program's words, zh-CN and English.
//
// Terms from /work/shared/GLOSSARY.md (the manual's phone screens) are used
// exactly; the rest follows their style.  The language follows the phone's
// WeChat language (wx.getSystemInfoSync().language): zh* -> zh, else en.
"use strict";

var WORDS = {
  zh: {
    appName: "邮箱安全助手",
    accountsTitle: "邮箱安全助手",
    scan: "扫一扫",
    empty: "还没有绑定邮箱。在网页的\u201C账号安全二次验证\u201D中选择微信\u201C绑定\u201D，再用\u201C扫一扫\u201D扫码绑定。",
    codeHint: "无法扫码授权时，可在网页选择\u201C验证码\u201D，输入六位验证码完成验证。",
    secondsLeft: "{n} 秒",
    copied: "已复制",
    offline: "无法连接邮箱服务器，显示的是上次同步的邮箱。",
    unsupported: "不支持的验证码算法",
    confirmTitle: "邮箱安全助手",
    confirmText: "您的邮箱 {mailbox} 正在请求验证，是否确认该操作？",
    kind_signin: "登录验证",
    kind_bind: "绑定微信",
    kind_unbind: "解绑验证",
    kind_change: "换绑验证",
    from: "请求来源：{addr}",
    at: "请求时间：{time}",
    trust: "确认授权并信任此设备",
    temporary: "临时登录",
    confirm: "确认",
    cancel: "取消",
    loading: "正在获取请求…",
    sending: "正在提交…",
    done_trust: "已授权，此设备以后登录无需二次验证。",
    done_temporary: "已授权本次登录。",
    done_confirm: "已确认。",
    done_bind: "绑定成功",
    done_deny: "已取消，该请求不会通过。",
    back: "返回",
    retry: "重试",
    err_expired: "二维码已失效或已被使用。请在网页上刷新二维码后重新扫码。",
    err_wrong_account: "该邮箱绑定的是另一个微信号。请使用绑定该邮箱的微信扫码。",
    err_answered: "此请求已处理过。",
    err_already_bound: "该邮箱的微信绑定已在别处更改，未能绑定。请在网页上重新开始。",
    err_wechat_unavailable: "暂时无法连接微信服务器，请稍后重试。",
    err_wechat_login: "微信登录失败，请稍后重试。",
    err_bad_code: "微信登录失败，请稍后重试。",
    err_network: "无法连接邮箱服务器，请检查网络后重试。",
    err_bad_scene: "这不是邮箱安全助手的二维码。",
    err_too_many: "尝试次数过多，请稍后再试。",
    err_other: "服务器出错（{code}），请稍后重试。",
    errTitle: "无法完成验证"
  },
  en: {
    appName: "Mail Security Assistant",
    accountsTitle: "Mail Security Assistant",
    scan: "Scan",
    empty: "No mailbox is bound yet. On the web page, under Two-step verification, choose WeChat \u2192 Bind, then scan its QR code here.",
    codeHint: "If scanning does not work, choose Code on the web page and enter the 6-digit code.",
    secondsLeft: "{n} s",
    copied: "Copied",
    offline: "Can't reach the mail server; showing the mailboxes from the last sync.",
    unsupported: "Unsupported code algorithm",
    confirmTitle: "Mail Security Assistant",
    confirmText: "Your mailbox {mailbox} is asking for verification. Approve?",
    kind_signin: "Sign-in",
    kind_bind: "Bind WeChat",
    kind_unbind: "Unbind",
    kind_change: "Change",
    from: "From: {addr}",
    at: "Time: {time}",
    trust: "Approve and trust this device",
    temporary: "Sign in this time only",
    confirm: "Approve",
    cancel: "Cancel",
    loading: "Fetching the request\u2026",
    sending: "Sending\u2026",
    done_trust: "Approved. This device will not be asked again.",
    done_temporary: "Approved for this sign-in only.",
    done_confirm: "Approved.",
    done_bind: "Bound",
    done_deny: "Cancelled. The request will not go through.",
    back: "Back",
    retry: "Try again",
    err_expired: "This QR code has expired or was already used. Refresh it on the web page and scan again.",
    err_wrong_account: "This mailbox is bound to another WeChat account. Scan with the WeChat account it is bound to.",
    err_answered: "This request has already been answered.",
    err_already_bound: "This mailbox's WeChat binding was changed elsewhere, so it was not bound. Start again on the web page.",
    err_wechat_unavailable: "WeChat's server can't be reached right now. Try again shortly.",
    err_wechat_login: "WeChat sign-in failed. Try again shortly.",
    err_bad_code: "WeChat sign-in failed. Try again shortly.",
    err_network: "Can't reach the mail server. Check your connection and try again.",
    err_bad_scene: "This is not a Mail Security Assistant QR code.",
    err_too_many: "Too many attempts. Try again later.",
    err_other: "Server error ({code}). Try again later.",
    errTitle: "Could not complete the verification"
  }
};

function lang() {
  try {
    var l = wx.getSystemInfoSync().language || "";
    return /^zh/i.test(l) ? "zh" : "en";
  } catch (e) {
    return "zh";
  }
}

function fill(text, vars) {
  return String(text).replace(/\{(\w+)\}/g, function (m, k) {
    return vars && vars[k] != null ? String(vars[k]) : m;
  });
}

// t("confirmText", {mailbox: "a@b"}) in the phone's language.
function t(key, vars) {
  var w = WORDS[lang()];
  return fill(w[key] != null ? w[key] : WORDS.zh[key] != null ? WORDS.zh[key] : key, vars);
}

// Words for an ApiError (or anything thrown).
function errorText(err) {
  var code = (err && err.code) || "other";
  if (err && err.status === 429) code = "too_many";
  var key = "err_" + code;
  if (WORDS.zh[key] != null) return t(key);
  return t("err_other", { code: code + (err && err.status ? " " + err.status : "") });
}

function pad2(n) { return (n < 10 ? "0" : "") + n; }

// Seconds since the epoch -> "2024-05-01 09:30:05" in the phone's time zone.
function formatTime(sec) {
  if (typeof sec !== "number" || !isFinite(sec)) return "";
  var d = new Date(sec * 1000);
  return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) + " " +
    pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
}

module.exports = { t: t, lang: lang, errorText: errorText, formatTime: formatTime, WORDS: WORDS };
