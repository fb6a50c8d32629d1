// app.js - mfagate's pages: sign-in with the second factor, two-step
// verification settings, client-specific passwords, trusted devices and
// recent sign-ins.  One page, hash routes, vanilla JS, no build step.
//
// The Content-Security-Policy allows scripts and styles from this origin
// only, so every element is built with DOM APIs and every handler is
// attached with addEventListener: no inline script, style or on* attribute.
// The JSON API is web/API.md; every state-changing request carries the
// session's X-CSRF-Token from GET /api/me.
//
// Element ids and data-testid attributes are stable: tests/browser uses them.
"use strict";
(function () {
  var I18N = window.MFA_I18N;
  var LANG_KEY = "mfa_lang";
  var state = { lang: "zh", me: null };

  // ---- words ---------------------------------------------------------------

  function t(key, vars) {
    var s = (I18N[state.lang] && I18N[state.lang][key]);
    if (s === undefined)
      s = I18N.zh[key] !== undefined ? I18N.zh[key] : key;
    if (vars)
      s = s.replace(/\{(\w+)\}/g, function (m, k) { return vars[k] !== undefined ? String(vars[k]) : m; });
    return s;
  }

  // The language: the user's own choice (the switch) first, then ?lang= in
  // the address, then the server's reading of Accept-Language (/api/lang),
  // then navigator.languages.  zh-CN unless English is preferred.
  function fromNavigator() {
    var list = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "zh"];
    for (var i = 0; i < list.length; i++) {
      var l = String(list[i]).toLowerCase();
      if (l.indexOf("zh") === 0) return "zh";
      if (l.indexOf("en") === 0) return "en";
    }
    return "zh";
  }

  function chooseLang() {
    var stored = null;
    try { stored = window.localStorage.getItem(LANG_KEY); } catch (e) { /* storage off */ }
    if (stored === "zh" || stored === "en") return Promise.resolve(stored);
    var q = new URLSearchParams(window.location.search).get("lang");
    if (q) {
      q = q.toLowerCase();
      if (q === "en") return Promise.resolve("en");
      if (q === "zh" || q === "zh-cn") return Promise.resolve("zh");
    }
    return fetch("/api/lang", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (b) { return b && (b.lang === "en" || b.lang === "zh") ? b.lang : fromNavigator(); })
      .catch(function () { return fromNavigator(); });
  }

  function applyLang() {
    document.documentElement.lang = state.lang === "en" ? "en" : "zh-CN";
    document.title = t("app.title");
    var nodes = document.querySelectorAll("[data-i18n]");
    for (var i = 0; i < nodes.length; i++) nodes[i].textContent = t(nodes[i].getAttribute("data-i18n"));
    var sw = document.getElementById("lang-switch");
    sw.textContent = t("lang.switch");
    sw.setAttribute("aria-label", t("lang.switch.label"));
    sw.setAttribute("lang", state.lang === "en" ? "zh-CN" : "en");
    document.getElementById("sidenav").setAttribute("aria-label", t("nav.label"));
  }

  // ---- DOM -----------------------------------------------------------------

  // h("button", {id: "x", testid: "x", text: "OK", on: {click: f}}, [children])
  function h(tag, attrs, children) {
    var el = document.createElement(tag);
    attrs = attrs || {};
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === undefined || v === null || v === false) return;
      if (k === "text") el.textContent = v;
      else if (k === "class") el.className = v;
      else if (k === "testid") el.setAttribute("data-testid", v);
      else if (k === "on") Object.keys(v).forEach(function (ev) { el.addEventListener(ev, v[ev]); });
      else if (k === "hidden") el.hidden = true;
      else if (k === "disabled") el.disabled = true;
      else if (k === "checked") el.checked = true;
      else if (k === "value") el.value = v;
      else el.setAttribute(k, v === true ? "" : v);
    });
    (children || []).forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return el;
  }

  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

  function field(id, label, input) {
    return h("div", { class: "field" }, [h("label", { for: id, text: label }), input]);
  }

  function errorBox(id) {
    return h("p", { class: "error", id: id, testid: id, role: "alert", hidden: true });
  }

  function showError(box, text) {
    box.textContent = text || "";
    box.hidden = !text;
  }

  var toastTimer = null;
  function toast(text) {
    var el = document.getElementById("toast");
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { el.hidden = true; }, 4000);
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  // API times are Unix seconds; null is "never".
  function fmtTime(sec) {
    if (sec === null || sec === undefined) return t("none");
    var d = new Date(sec * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  // ---- the API -------------------------------------------------------------

  function ApiError(status, body) {
    this.status = status;
    this.code = (body && body.error) || (status === 0 ? "network" : "http_" + status);
    this.body = body || {};
  }

  function api(method, path, body) {
    var headers = { "Accept": "application/json" };
    var opts = { method: method, credentials: "same-origin", headers: headers };
    if (method !== "GET" && method !== "HEAD") {
      if (state.me && state.me.csrf) headers["X-CSRF-Token"] = state.me.csrf;
      headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body || {});
    }
    return fetch(path, opts).then(function (r) {
      return r.text().then(function (text) {
        var obj = null;
        try { obj = text ? JSON.parse(text) : null; } catch (e) { obj = null; }
        if (!r.ok) throw new ApiError(r.status, obj);
        return obj;
      });
    }, function () {
      throw new ApiError(0, null);
    });
  }

  // An error in the glossary's words.
  function errText(err) {
    var code = err && err.code ? err.code : "unknown";
    if (code === "bad_code" && typeof err.body.attempts_left === "number")
      return t("err.bad_code.left", { n: err.body.attempts_left });
    var key = "err." + code;
    if (I18N.zh[key] !== undefined) return t(key);
    if (err && err.status >= 500) return t("err.internal");
    return t("err.unknown", { code: code });
  }

  // A signed-in page got "not signed in": back to the sign-in form.
  function handleAuthLoss(err) {
    if (err && err.status === 401 && err.code === "not_signed_in") {
      state.me = null;
      closeAllModals();
      showChrome();
      go("#/login");
      toast(t("err.not_signed_in"));
      return true;
    }
    return false;
  }

  function loadMe() {
    return api("GET", "/api/me").then(function (me) {
      state.me = me;
      return me;
    });
  }

  // ---- modals --------------------------------------------------------------

  var modals = [];

  // modal({id, title, body: [nodes], buttons: [nodes]}) -> {el, box, close}
  function modal(opts) {
    var titleId = opts.id + "-title";
    var box = h("div", { class: "modal " + (opts.wide ? "wide" : ""), role: "dialog", "aria-modal": "true",
      "aria-labelledby": titleId, id: opts.id, testid: opts.id }, [
      h("h2", { id: titleId, text: opts.title }),
      h("div", { class: "modal-body" }, opts.body || []),
      h("div", { class: "modal-buttons" }, opts.buttons || [])
    ]);
    var overlay = h("div", { class: "overlay" }, [box]);
    var prevFocus = document.activeElement;
    var m = {
      el: box,
      close: function () {
        var i = modals.indexOf(m);
        if (i >= 0) modals.splice(i, 1);
        if (overlay.parentNode) overlay.parentNode.removeChild(overlay);
        document.removeEventListener("keydown", onKey);
        if (prevFocus && prevFocus.focus && document.body.contains(prevFocus)) prevFocus.focus();
      },
      onCancel: opts.onCancel
    };
    function onKey(ev) {
      if (ev.key === "Escape" && modals[modals.length - 1] === m) {
        m.close();
        if (m.onCancel) m.onCancel();
      }
    }
    document.addEventListener("keydown", onKey);
    modals.push(m);
    document.getElementById("modal-root").appendChild(overlay);
    var first = box.querySelector("input:not([type=checkbox]):not([disabled]), button:not([disabled])");
    if (first) first.focus();
    return m;
  }

  function closeAllModals() {
    while (modals.length) modals[modals.length - 1].close();
  }

  // A yes/no question in a modal (window.confirm looks foreign and blocks).
  function confirmBox(text, okText, onOk) {
    var err = errorBox("confirm-error");
    var ok = h("button", { type: "button", class: "btn primary danger", id: "confirm-ok", testid: "confirm-ok", text: okText });
    var cancel = h("button", { type: "button", class: "btn", id: "confirm-cancel", testid: "confirm-cancel", text: t("btn.cancel") });
    var m = modal({ id: "confirm-dialog", title: okText, body: [h("p", { text: text }), err], buttons: [ok, cancel] });
    cancel.addEventListener("click", m.close);
    ok.addEventListener("click", function () {
      ok.disabled = true;
      Promise.resolve(onOk()).then(m.close, function (e) {
        ok.disabled = false;
        if (!handleAuthLoss(e)) showError(err, errText(e));
      });
    });
    return m;
  }

  // ---- the second-factor dialog (图 2-7-2, 3-5-2, 3-6-2) ---------------------
  //
  // opts.mode "login": POST /api/login/verify (with the trust checkbox);
  // opts.mode "verify": POST /api/verify (a fresh check before unbind/change).
  // opts.onDone(response) after success; opts.onCancel after 取消.

  function secondFactor(opts) {
    var methods = opts.methods || [];
    var codeMethods = methods.filter(function (m) { return m === "totp" || m === "email" || m === "recovery"; });
    var hasScan = methods.indexOf("wechat") >= 0;
    var method = codeMethods.indexOf("totp") >= 0 ? "totp" : (codeMethods[0] || "totp");
    if (hasScan) { codeMethods.unshift("wechat"); method = "wechat"; }   // 图 2-7-2 right: the mini program's code

    var err = errorBox("sf-error");
    var tabScan = h("button", { type: "button", role: "tab", class: "tab", id: "sf-tab-scan", testid: "sf-tab-scan",
      text: t("sf.tab.scan"), "aria-selected": "false", hidden: !hasScan });
    var tabCode = h("button", { type: "button", role: "tab", class: "tab active", id: "sf-tab-code", testid: "sf-tab-code",
      text: t("sf.tab.code"), "aria-selected": "true" });
    var tabs = h("div", { class: "tabs", role: "tablist" }, [tabScan, tabCode]);

    var scanPanel = h("div", { class: "panel", id: "sf-panel-scan", role: "tabpanel", hidden: true }, [
      h("p", { text: t("sf.scan.hint") }),
      h("p", { class: "muted", text: t("sf.scan.alt") })
    ]);

    var methodLine = h("p", { class: "method-line", id: "sf-method", testid: "sf-method" });
    var hint = h("p", { class: "muted", id: "sf-hint" });
    var sent = h("p", { class: "ok-text", id: "sf-email-sent", testid: "sf-email-sent", role: "status", hidden: true });
    var sendBtn = h("button", { type: "button", class: "btn small", id: "sf-email-send", testid: "sf-email-send",
      text: t("sf.email.send"), hidden: true });
    var code = h("input", { id: "sf-code", testid: "sf-code", type: "text", inputmode: "numeric",
      autocomplete: "one-time-code", maxlength: "8", placeholder: t("sf.code.ph"), "aria-describedby": "sf-hint" });
    var trust = h("input", { type: "checkbox", id: "sf-trust", testid: "sf-trust" });
    var trustRow = opts.mode === "login"
      ? h("div", { class: "check" }, [trust, h("label", { for: "sf-trust", text: t("sf.trust") })]) : null;
    var switchBtn = h("button", { type: "button", class: "link-btn", id: "sf-switch", testid: "sf-switch",
      text: t("sf.switch"), hidden: codeMethods.length < 2 });
    var useRc = recoveryLink(methods, function () {
      if (codePanel.hidden) selectTab(false);
      method = "recovery";
      showMethod();
      code.focus();
    });
    var codePanel = h("div", { class: "panel", id: "sf-panel-code", role: "tabpanel" }, [
      methodLine, hint,
      h("div", { class: "code-row" }, [
        h("label", { for: "sf-code", class: "sr-only", text: t("sf.code.label") }), code, sendBtn
      ]),
      sent, trustRow,
      hasScan ? h("p", { class: "muted small", text: t("sf.code.alt") }) : null,
      useRc
    ]);

    var ok = h("button", { type: "submit", class: "btn primary", id: "sf-ok", testid: "sf-ok", text: t("btn.ok") });
    var cancel = h("button", { type: "button", class: "btn", id: "sf-cancel", testid: "sf-cancel", text: t("btn.cancel") });
    var form = h("form", { id: "sf-form", novalidate: true }, [
      opts.intro ? h("p", { text: opts.intro }) : null, tabs, scanPanel, codePanel, err
    ]);
    var m = modal({
      id: "sf-dialog",
      title: opts.title || t("sf.title"),
      body: [form],
      buttons: [switchBtn, h("span", { class: "spacer" }), ok, cancel],
      onCancel: opts.onCancel
    });
    ok.setAttribute("form", "sf-form");

    function showMethod() {
      methodLine.textContent = t("sf.method." + method);
      hint.textContent = t("sf.code.hint." + method);
      sendBtn.hidden = method !== "email";
      recoveryInput(code, useRc, method);
      sent.hidden = true;
      code.value = "";
      showError(err, "");
    }
    showMethod();

    function selectTab(scan) {
      tabScan.classList.toggle("active", scan);
      tabCode.classList.toggle("active", !scan);
      tabScan.setAttribute("aria-selected", scan ? "true" : "false");
      tabCode.setAttribute("aria-selected", scan ? "false" : "true");
      scanPanel.hidden = !scan;
      codePanel.hidden = scan;
      ok.hidden = scan;
      if (scan && scanCtl) scanCtl.start();
    }
    tabScan.addEventListener("click", function () { selectTab(true); });
    tabCode.addEventListener("click", function () { selectTab(false); });

    switchBtn.addEventListener("click", function () {
      method = codeMethods[(codeMethods.indexOf(method) + 1) % codeMethods.length];
      showMethod();
      code.focus();
    });

    // A code by e-mail for this challenge: a sign-in's, or a fresh
    // verification's (unbind/change) on its own route.
    sendBtn.addEventListener("click", function () {
      sendBtn.disabled = true;
      showError(err, "");
      var route = opts.mode === "verify" ? "/api/verify/email-code" : "/api/login/email-code";
      api("POST", route, { challenge: opts.challenge }).then(function (r) {
        sent.textContent = t("sf.email.sent", { to: r && r.sent_to ? r.sent_to : "" });
        sent.hidden = false;
        sendBtn.disabled = false;
        code.focus();
      }, function (e) {
        sendBtn.disabled = false;
        showError(err, errText(e));
      });
    });

    cancel.addEventListener("click", function () {
      m.close();
      if (opts.onCancel) opts.onCancel();
    });

    var finished = false;
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (finished) return;
      var c = code.value.replace(/\s+/g, "");
      if (!c) { showError(err, t("sf.missing")); code.focus(); return; }
      ok.disabled = true;
      showError(err, "");
      var req = opts.mode === "login"
        ? api("POST", "/api/login/verify", { challenge: opts.challenge, method: method, code: c, trust: trust.checked })
        : api("POST", "/api/verify", { challenge: opts.challenge, method: method, code: c });
      req.then(function (r) {
        finished = true;
        m.close();
        opts.onDone(r);
      }, function (e) {
        ok.disabled = false;
        if (opts.mode !== "login" && handleAuthLoss(e)) return;
        showError(err, errText(e));
        // A used-up challenge cannot be retried: only 取消 is left.
        if (e.code === "expired" || e.code === "too_many_attempts") {
          ok.disabled = true;
          code.disabled = true;
        } else {
          code.select();
          code.focus();
        }
      });
    });
    var scanCtl = hasScan ? wechatScanPanel(scanPanel, opts, function (r) {
      finished = true;
      m.close();
      opts.onDone(r);
    }, function () { selectTab(false); code.focus(); }) : null;
    if (scanCtl) {
      onModalClose(m, scanCtl.stop);
      // 更换验证方式 on the scan tab: to the code tab's next method.
      switchBtn.addEventListener("click", function () { if (codePanel.hidden) selectTab(false); });
      selectTab(true);
    }
    code.focus();
    return m;
  }

  // ---- recovery: one-time codes, and the account recovery by e-mail -------
  //
  // web/API.md "Recovery codes" and "Backup e-mail".  Codes are shown once,
  // in the dialog that made them; the page never keeps them.

  // The "use a recovery code" link of the second-factor dialog (null if the
  // user has none left).
  function recoveryLink(methods, onUse) {
    if (methods.indexOf("recovery") < 0) return null;
    return h("p", { class: "small" }, [h("button", { type: "button", class: "link-btn", id: "sf-use-recovery",
      testid: "sf-use-recovery", text: t("sf.use_recovery"), on: { click: onUse } })]);
  }

  // The code field takes "xxxxx-xxxxx" for a recovery code, six digits else.
  function recoveryInput(code, link, method) {
    var rc = method === "recovery";
    code.maxLength = rc ? 16 : 8;
    code.setAttribute("inputmode", rc ? "text" : "numeric");
    code.setAttribute("autocomplete", rc ? "off" : "one-time-code");
    code.placeholder = rc ? t("rc.code.ph") : t("sf.code.ph");
    if (link) link.hidden = rc;
  }

  // The 恢复码 card under the factors (signed in).
  function recoveryCard(view, hasFactor) {
    var err = errorBox("rc-error");
    var status = h("p", { id: "rc-status", testid: "rc-status", text: t("loading") });
    var gen = h("button", { type: "button", class: "btn primary", id: "rc-generate", testid: "rc-generate",
      text: t("rc.generate"), disabled: !hasFactor });
    var sec = h("section", { class: "card", id: "rc-card", testid: "rc-card", "aria-labelledby": "rc-card-title" }, [
      h("h2", { id: "rc-card-title", text: t("rc.title") }),
      h("p", { class: "muted", text: t("rc.intro") }),
      status,
      hasFactor ? null : h("p", { class: "muted small", id: "rc-need-factor", text: t("rc.need_factor") }),
      h("div", { class: "toolbar" }, [gen]),
      err
    ]);
    view.appendChild(sec);
    var have = 0;
    function load() {
      return api("GET", "/api/recovery-codes").then(function (r) {
        have = r.total;
        sec.setAttribute("data-left", String(r.left));
        status.textContent = r.total ? t("rc.left", { left: r.left, total: r.total, created: fmtTime(r.created) })
          : t("rc.none");
        gen.textContent = r.total ? t("rc.regenerate") : t("rc.generate");
      }, function (e) { if (!handleAuthLoss(e)) showError(err, errText(e)); });
    }
    function make() {
      gen.disabled = true;
      showError(err, "");
      return api("POST", "/api/recovery-codes", {}).then(function (r) {
        gen.disabled = false;
        recoveryCodesDialog(r.codes, load);
      }, function (e) {
        gen.disabled = false;
        if (!handleAuthLoss(e)) showError(err, errText(e));
        throw e;
      });
    }
    gen.addEventListener("click", function () {
      if (!have) { make().catch(function () {}); return; }
      confirmBox(t("rc.regenerate.confirm"), t("rc.regenerate"), make);
    });
    load();
  }

  // The new codes, shown once.
  function recoveryCodesDialog(codes, reload) {
    var list = h("ol", { class: "rc-list", id: "rc-list", testid: "rc-list" }, codes.map(function (c) {
      return h("li", { testid: "rc-code", class: "password", text: c });
    }));
    var copy = h("button", { type: "button", class: "btn small", id: "rc-copy", testid: "rc-copy", text: t("btn.copy") });
    var copyMsg = h("span", { class: "muted", id: "rc-copy-status", testid: "rc-copy-status", role: "status" });
    copy.addEventListener("click", function () {
      copyText(codes.join("\n")).then(function () {
        copy.textContent = t("btn.copied");
        copyMsg.textContent = "";
      }, function () {
        copyMsg.textContent = t("ap.copy.failed");
        selectNode(list);
      });
    });
    var done = h("button", { type: "button", class: "btn primary", id: "rc-done", testid: "rc-done", text: t("btn.done") });
    var m = modal({
      id: "rc-dialog", title: t("rc.result.title"),
      body: [h("p", { text: t("rc.result.note") }), list, h("div", { class: "pw-row" }, [copy, copyMsg]),
        h("p", { class: "warn", text: t("rc.result.warn") })],
      buttons: [done],
      onCancel: reload
    });
    done.addEventListener("click", function () { m.close(); reload(); });
    done.focus();
  }

  // "Lost your phone?" under the sign-in form, when this server recovers
  // accounts by e-mail ([web] email_factor = recovery).
  function lostPhoneLink(card, userInput) {
    api("GET", "/api/recovery").then(function (r) {
      if (!r || !r.by_email || !document.body.contains(card)) return;
      card.appendChild(h("p", { class: "small lost" }, [h("button", { type: "button", class: "link-btn",
        id: "login-lost", testid: "login-lost", text: t("rec.link"),
        on: { click: function () { recoveryDialog(userInput.value.trim(), r.wait); } } })]));
    }, function () {});
  }

  // Account recovery by the backup e-mail: begin -> code -> confirm -> (the
  // wait) -> finish: a second code -> the lost methods are removed.
  function recoveryDialog(user, waitS) {
    var err = errorBox("rec-error");
    var who = h("input", { id: "rec-user", testid: "rec-user", type: "text", autocomplete: "username",
      placeholder: t("login.user.ph"), value: user || "" });
    var code = h("input", { id: "rec-code", testid: "rec-code", type: "text", inputmode: "numeric",
      autocomplete: "one-time-code", maxlength: "8", placeholder: t("sf.code.ph"), disabled: true });
    var info = h("p", { class: "ok-text", id: "rec-status", testid: "rec-status", role: "status", hidden: true });
    var send = h("button", { type: "button", class: "btn small", id: "rec-send", testid: "rec-send", text: t("sf.email.send") });
    var fin = h("button", { type: "button", class: "btn", id: "rec-finish", testid: "rec-finish", text: t("rec.finish") });
    var ok = h("button", { type: "submit", class: "btn primary", id: "rec-ok", testid: "rec-ok", text: t("btn.ok"),
      form: "rec-form", disabled: true });
    var close = h("button", { type: "button", class: "btn", id: "rec-cancel", testid: "rec-cancel", text: t("btn.close") });
    var form = h("form", { id: "rec-form", novalidate: true }, [
      h("p", { text: t("rec.intro", { wait: recoveryWaitText(waitS) }) }),
      field("rec-user", t("login.user"), who),
      h("div", { class: "code-row" }, [h("label", { for: "rec-code", class: "sr-only", text: t("sf.code.label") }), code, send]),
      info, err
    ]);
    var m = modal({ id: "rec-dialog", title: t("rec.title"), body: [form], buttons: [fin, h("span", { class: "spacer" }), ok, close] });
    var step = "confirm";    // what a code in the field is for: "confirm" or "finish"
    close.addEventListener("click", m.close);

    function name() {
      var u = who.value.trim();
      if (!u) { showError(err, t("login.missing")); who.focus(); }
      return u;
    }
    function say(text) { info.textContent = text; info.hidden = !text; }
    function codeSent(r, next) {
      step = next;
      say(t("sf.email.sent", { to: r && r.sent_to ? r.sent_to : "" }));
      code.disabled = false;
      ok.disabled = false;
      code.value = "";
      code.focus();
    }
    function failed(e) {
      if (e.code === "too_early") {
        say(t("rec.too_early", { time: fmtTime(e.body.ready_at) }));
        return;
      }
      showError(err, errText(e));
    }

    send.addEventListener("click", function () {
      var u = name();
      if (!u) return;
      showError(err, "");
      send.disabled = true;
      api("POST", "/api/recovery/begin", { user: u }).then(function (r) {
        send.disabled = false;
        codeSent(r, "confirm");
      }, function (e) { send.disabled = false; failed(e); });
    });
    fin.addEventListener("click", function () {
      var u = name();
      if (!u) return;
      showError(err, "");
      say("");
      fin.disabled = true;
      api("POST", "/api/recovery/finish", { user: u }).then(function (r) {
        fin.disabled = false;
        codeSent(r, "finish");
      }, function (e) { fin.disabled = false; failed(e); });
    });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var u = name(), c = code.value.replace(/\s+/g, "");
      if (!u) return;
      if (!c) { showError(err, t("sf.missing")); code.focus(); return; }
      showError(err, "");
      ok.disabled = true;
      api("POST", "/api/recovery/" + step, { user: u, code: c }).then(function (r) {
        code.value = "";
        code.disabled = true;
        if (step === "confirm") {
          say(t("rec.waiting", { time: fmtTime(r.ready_at) }));
        } else {
          say(t("rec.done", { kinds: (r.removed || []).map(function (k) { return t("ts.kind." + k); }).join("、") || t("none") }));
          fin.disabled = true;
          send.disabled = true;
        }
      }, function (e) {
        ok.disabled = false;
        failed(e);
        code.select();
      });
    });
    who.focus();
    return m;
  }

  function recoveryWaitText(s) {
    s = s || 0;
    if (s >= 3600 && s % 3600 === 0) return t("rec.hours", { n: s / 3600 });
    if (s >= 60 && s % 60 === 0) return t("rec.minutes", { n: s / 60 });
    return t("rec.seconds", { n: s });
  }

  // ---- the frame -----------------------------------------------------------

  function showChrome() {
    var signed = !!state.me;
    document.getElementById("sidenav").hidden = !signed;
    document.getElementById("logout").hidden = !signed;
    var who = document.getElementById("me-user");
    who.hidden = !signed;
    who.textContent = signed ? state.me.user : "";
    document.body.classList.toggle("signed-in", signed);
  }

  function markNav(route) {
    var links = document.querySelectorAll("#sidenav a");
    for (var i = 0; i < links.length; i++) {
      if (links[i].getAttribute("href") === route) links[i].setAttribute("aria-current", "page");
      else links[i].removeAttribute("aria-current");
    }
  }

  function go(hash) {
    if (window.location.hash === hash) render();
    else window.location.hash = hash;
  }

  var ROUTES = {
    "#/login": renderLogin,
    "#/2fa": renderTwoStep,
    "#/app-passwords": renderAppPasswords,
    "#/devices": renderDevices,
    "#/signins": renderSignins
  };

  var wantedRoute = null;   // where to go after signing in

  function render() {
    var route = window.location.hash || "#/2fa";
    if (!ROUTES[route]) route = "#/2fa";
    if (!state.me && route !== "#/login") {
      wantedRoute = route;
      route = "#/login";
      if (window.location.hash !== route) { window.location.hash = route; return; }
    }
    if (state.me && route === "#/login") {
      window.location.hash = "#/2fa";
      return;
    }
    closeAllModals();
    showChrome();
    markNav(route);
    var view = document.getElementById("view");
    clear(view);
    ROUTES[route](view);
  }

  function page(view, id, title, children) {
    var sec = h("section", { class: "card", id: id, testid: id, "aria-labelledby": id + "-title" }, [
      h("h1", { id: id + "-title", text: title })
    ].concat(children));
    view.appendChild(sec);
    return sec;
  }

  // ---- sign-in (图 2-7-1) ---------------------------------------------------

  function renderLogin(view) {
    var err = errorBox("login-error");
    var user = h("input", { id: "login-user", testid: "login-user", name: "user", type: "text",
      autocomplete: "username", placeholder: t("login.user.ph"), required: true });
    var pass = h("input", { id: "login-password", testid: "login-password", name: "password", type: "password",
      autocomplete: "current-password", placeholder: t("login.password.ph"), required: true });
    var submit = h("button", { type: "submit", class: "btn primary wide", id: "login-submit", testid: "login-submit",
      text: t("login.submit") });
    var form = h("form", { id: "login-form", testid: "login-form", novalidate: true }, [
      field("login-user", t("login.user"), user),
      field("login-password", t("login.password"), pass),
      err, submit
    ]);
    var card = page(view, "page-login", t("login.title"), [form]);
    card.classList.add("narrow");
    lostPhoneLink(card, user);

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (!user.value.trim() || !pass.value) { showError(err, t("login.missing")); return; }
      submit.disabled = true;
      showError(err, "");
      api("POST", "/api/login", { user: user.value.trim(), password: pass.value }).then(function (r) {
        if (r && r.state === "second_factor") {
          if (typeof r.push === "boolean") wechat.pushOff = !r.push;
          secondFactor({
            mode: "login", challenge: r.challenge, methods: r.methods,
            onDone: signedIn,
            onCancel: function () { submit.disabled = false; pass.value = ""; pass.focus(); }
          });
        } else {
          signedIn();
        }
      }, function (e) {
        submit.disabled = false;
        showError(err, errText(e));
        pass.select();
      });
    });
    user.focus();

    function signedIn() {
      loadMe().then(function () {
        var to = wantedRoute && wantedRoute !== "#/login" ? wantedRoute : "#/2fa";
        wantedRoute = null;
        go(to);
      }, function (e) {
        submit.disabled = false;
        showError(err, errText(e));
      });
    }
  }

  // ---- two-step verification settings (图 2-6-1, 2-6-4, 3-5-1, 3-6-1) -------

  var KINDS = ["totp", "email", "wechat"];

  function renderTwoStep(view) {
    var factors = {};
    (state.me.factors || []).forEach(function (f) { factors[f.kind] = f; });

    var rows = KINDS.map(function (kind) {
      var f = factors[kind];
      var later = kind === "wechat" && !wechatOffered();   // WeChat off on this server
      var status;
      if (later) status = h("span", { class: "badge muted", text: t("ts.wechat.off") });
      else if (f) status = h("span", { class: "badge ok", text: f.label ? f.label : t("ts.bound") });
      else status = h("span", { class: "badge", text: t("ts.notbound") });
      var buttons;
      if (later) {
        buttons = [h("button", { type: "button", class: "btn small", id: "bind-" + kind, testid: "bind-" + kind,
          text: t("btn.bind"), disabled: true, "aria-disabled": "true" })];
      } else if (f) {
        buttons = [
          h("button", { type: "button", class: "btn small", id: "change-" + kind, testid: "change-" + kind,
            text: t("btn.change"), on: { click: function () { startVerify("change", kind); } } }),
          h("button", { type: "button", class: "btn small", id: "unbind-" + kind, testid: "unbind-" + kind,
            text: t("btn.unbind"), on: { click: function () { startVerify("unbind", kind); } } })
        ];
      } else {
        buttons = [h("button", { type: "button", class: "btn small primary", id: "bind-" + kind, testid: "bind-" + kind,
          text: t("btn.bind"), on: { click: function () { startBind(kind, null); } } })];
      }
      return h("tr", { testid: "factor-" + kind, id: "factor-" + kind, "data-bound": f ? "1" : "0",
        class: later ? "disabled" : "" }, [
        h("th", { scope: "row" }, [h("span", { class: "kind-icon kind-" + kind, "aria-hidden": "true" }), t("ts.kind." + kind)]),
        h("td", {}, [status]),
        h("td", { class: "actions" }, buttons)
      ]);
    });

    page(view, "page-2fa", t("ts.title"), [
      h("div", { class: "intro" }, [
        h("p", { class: "lead", text: t("ts.intro1") }),
        h("p", { text: t("ts.intro2") }),
        h("ul", {}, [h("li", { text: t("ts.intro3") }), h("li", { text: t("ts.intro4") }), h("li", { text: t("ts.intro5") })])
      ]),
      h("table", { class: "factors", id: "factor-table", testid: "factor-table" }, [h("tbody", {}, rows)]),
      h("p", { class: "footer-note", id: "ts-footer", testid: "ts-footer" }, [
        t("ts.footer.pre"),
        h("a", { href: "#/app-passwords", text: t("ts.footer.link") }),
        t("ts.footer.post")
      ]),
      h("p", { class: "apppw-link" }, [
        h("a", { href: "#/app-passwords", id: "apppw-link", testid: "apppw-link", text: t("ts.apppw.link") }),
        h("span", { class: "muted", text: " " + t("ts.apppw.hint") })
      ])
    ]);
    recoveryCard(view, (state.me.factors || []).length > 0);
  }

  function refreshTwoStep(message) {
    return loadMe().then(function () {
      if (window.location.hash === "#/2fa") render();
      if (message) toast(message);
    }, function (e) { if (!handleAuthLoss(e)) toast(errText(e)); });
  }

  // Unbind and change need a fresh verification with a current factor.
  function startVerify(purpose, kind) {
    api("POST", "/api/verify/begin", { purpose: purpose, kind: kind }).then(function (r) {
      secondFactor({
        mode: "verify", challenge: r.challenge, methods: r.methods,
        title: t("sf." + purpose + ".title"), intro: t("sf." + purpose + ".intro"),
        onDone: function (v) {
          if (purpose === "change") { startBind(kind, v.grant); return; }
          api("POST", "/api/factors/" + kind + "/unbind", { grant: v.grant }).then(function () {
            refreshTwoStep(t("ts.unbound.ok"));
          }, function (e) { if (!handleAuthLoss(e)) toast(errText(e)); });
        }
      });
    }, function (e) { if (!handleAuthLoss(e)) toast(errText(e)); });
  }

  function startBind(kind, grant) {
    if (kind === "totp") bindTotp(grant);
    else if (kind === "email") bindEmail(grant);
    else if (kind === "wechat") bindWechat(grant);
  }

  // Third-party OTP: the QR and the key from begin, confirmed by one code.
  function bindTotp(grant) {
    api("POST", "/api/factors/totp/begin", grant ? { grant: grant } : {}).then(function (r) {
      var err = errorBox("otp-error");
      var img = h("img", { id: "otp-qr", testid: "otp-qr", class: "qr", alt: t("otp.qr.alt"), width: "200", height: "200",
        src: "data:image/svg+xml;base64," + b64(r.qr_svg) });
      var code = h("input", { id: "otp-code", testid: "otp-code", type: "text", inputmode: "numeric",
        autocomplete: "one-time-code", maxlength: "8", placeholder: t("sf.code.ph") });
      var ok = h("button", { type: "submit", class: "btn primary", id: "otp-ok", testid: "otp-ok", text: t("btn.ok"), form: "otp-form" });
      var cancel = h("button", { type: "button", class: "btn", id: "otp-cancel", testid: "otp-cancel", text: t("btn.cancel") });
      var form = h("form", { id: "otp-form", novalidate: true }, [
        h("p", { text: t("otp.step1") }),
        h("div", { class: "qr-box" }, [img]),
        h("p", { class: "secret-line" }, [
          h("span", { class: "muted", text: t("otp.secret") + "：" }),
          // In groups of four, as authenticator apps show keys; apps ignore the spaces.
          h("code", { id: "otp-secret", testid: "otp-secret", class: "secret", "data-secret": r.secret,
            text: String(r.secret).replace(/(.{4})(?=.)/g, "$1 ") })
        ]),
        h("p", { text: t("otp.step2") }),
        field("otp-code", t("sf.code.label"), code),
        err
      ]);
      var m = modal({ id: "otp-dialog", title: t("otp.title"), body: [form], buttons: [ok, cancel] });
      code.focus();
      cancel.addEventListener("click", m.close);
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var c = code.value.replace(/\s+/g, "");
        if (!c) { showError(err, t("sf.missing")); return; }
        ok.disabled = true;
        showError(err, "");
        api("POST", "/api/factors/totp/confirm", { code: c }).then(function () {
          m.close();
          refreshTwoStep(t("ts.bound.ok"));
        }, function (e) {
          ok.disabled = false;
          if (handleAuthLoss(e)) return;
          showError(err, errText(e));
          if (e.code === "expired" || e.code === "too_many_attempts") ok.disabled = true;
        });
      });
    }, function (e) { if (!handleAuthLoss(e)) toast(errText(e)); });
  }

  // Backup e-mail: an address, a code sent to it, the code typed back.
  function bindEmail(grant) {
    var err = errorBox("email-error");
    var addr = h("input", { id: "email-address", testid: "email-address", type: "email", autocomplete: "email",
      placeholder: t("email.address.ph") });
    var send = h("button", { type: "button", class: "btn small", id: "email-send", testid: "email-send", text: t("btn.send") });
    var sent = h("p", { class: "ok-text", id: "email-sent", testid: "email-sent", role: "status", hidden: true });
    var code = h("input", { id: "email-code", testid: "email-code", type: "text", inputmode: "numeric",
      autocomplete: "one-time-code", maxlength: "8", placeholder: t("sf.code.ph"), disabled: true });
    var ok = h("button", { type: "submit", class: "btn primary", id: "email-ok", testid: "email-ok", text: t("btn.ok"),
      form: "email-form", disabled: true });
    var cancel = h("button", { type: "button", class: "btn", id: "email-cancel", testid: "email-cancel", text: t("btn.cancel") });
    var form = h("form", { id: "email-form", novalidate: true }, [
      h("div", { class: "field" }, [
        h("label", { for: "email-address", text: t("email.address") }),
        h("div", { class: "code-row" }, [addr, send])
      ]),
      sent,
      field("email-code", t("email.code"), code),
      err
    ]);
    var m = modal({ id: "email-dialog", title: t("email.title"), body: [form], buttons: [ok, cancel] });
    addr.focus();
    cancel.addEventListener("click", m.close);
    send.addEventListener("click", function () {
      var a = addr.value.trim();
      if (!a) { showError(err, t("email.missing")); return; }
      send.disabled = true;
      showError(err, "");
      var body = { address: a };
      if (grant) body.grant = grant;
      api("POST", "/api/factors/email/begin", body).then(function (r) {
        send.disabled = false;
        sent.textContent = t("email.sent", { to: (r && r.sent_to) || a });
        sent.hidden = false;
        code.disabled = false;
        ok.disabled = false;
        code.focus();
      }, function (e) {
        send.disabled = false;
        if (handleAuthLoss(e)) return;
        showError(err, errText(e));
      });
    });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var c = code.value.replace(/\s+/g, "");
      if (!c) { showError(err, t("sf.missing")); return; }
      ok.disabled = true;
      showError(err, "");
      api("POST", "/api/factors/email/confirm", { code: c }).then(function () {
        m.close();
        refreshTwoStep(t("ts.bound.ok"));
      }, function (e) {
        ok.disabled = false;
        if (handleAuthLoss(e)) return;
        showError(err, errText(e));
      });
    });
  }

  // base64 of a UTF-8 string (the QR SVG), for a data: URL.
  function b64(s) {
    var bytes = new TextEncoder().encode(String(s || ""));
    var bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return window.btoa(bin);
  }

  // ---- WeChat (issue 5; 图 2-6-2..4, 2-7-2/3, 3-5-2/3, 3-6-2/3/6) -----------
  //
  // A *scene* (web/API.md, "WeChat") is what a QR code carries: the page
  // shows it, the phone (the mini program, or tests/phone_sim.py) answers it,
  // and the page learns the answer by long-polling GET /api/scan/<scene>/wait.
  // scanBox() is that QR with its wait and its states; the bind dialog and
  // the second-factor dialog's 扫码授权 tab both use it.

  var wechat = { off: false, pushOff: false };

  // Whether this server offers WeChat: /api/me says so ("wechat": bool);
  // before it is loaded, on until a route answers 404 wechat_off.  Push:
  // /api/login's second-factor answer says so ("push": bool).
  function wechatOffered() {
    if (state.me && typeof state.me.wechat === "boolean") return state.me.wechat;
    return !wechat.off;
  }

  // Runs f when the modal m closes, however it closes (button, Escape,
  // closeAllModals on a route change): the wait must not outlive its QR.
  function onModalClose(m, f) {
    var close = m.close;
    m.close = function () { f(); close(); };
  }

  // Waits for the phone's answer: GET /api/scan/<scene>/wait again while it
  // says "pending"; onFinal(state, answer) once with approved, denied,
  // expired, used, or "error" (with the ApiError).  A network error or a 5xx
  // is retried a few times with a pause.  Past the scene's lifetime (plus a
  // margin) without an answer, the page calls it expired itself.
  function waitScene(scene, expiresIn, onFinal) {
    var stopped = false, ctrl = null, failures = 0, timer = null;
    var deadline = Date.now() + ((expiresIn > 0 ? expiresIn : 300) + 15) * 1000;
    function finish(st, extra) {
      if (stopped) return;
      stopped = true;
      onFinal(st, extra);
    }
    function again(ms) { timer = setTimeout(once, ms); }
    function once() {
      if (stopped) return;
      if (Date.now() > deadline) { finish("expired"); return; }
      ctrl = typeof AbortController === "function" ? new AbortController() : null;
      fetch("/api/scan/" + encodeURIComponent(scene) + "/wait", {
        credentials: "same-origin", cache: "no-store",
        headers: { "Accept": "application/json" }, signal: ctrl ? ctrl.signal : undefined
      }).then(function (r) {
        return r.text().then(function (text) {
          var b = null;
          try { b = text ? JSON.parse(text) : null; } catch (e) { b = null; }
          return { status: r.status, body: b };
        });
      }).then(function (res) {
        if (stopped) return;
        var b = res.body || {};
        if (res.status === 200) {
          failures = 0;
          if (b.state === "pending" || !b.state) { again(0); return; }
          finish(b.state, b.answer);
        } else if (res.status === 410 || (res.status === 404 && b.error !== "wechat_off")) {
          finish("expired");
        } else if (res.status >= 500 && ++failures <= 5) {
          again(1000 * failures);
        } else {
          finish("error", new ApiError(res.status, res.body));
        }
      }, function () {
        if (stopped) return;
        if (++failures <= 5) again(1000 * failures);
        else finish("error", new ApiError(0, null));
      });
    }
    once();
    return {
      stop: function () {
        stopped = true;
        clearTimeout(timer);
        if (ctrl) try { ctrl.abort(); } catch (e) { /* already done */ }
      }
    };
  }

  // The QR of a scene answer as an <img>: qr_img is WeChat's mini-program
  // code (a data: URL), qr_svg one made here.  An SVG put inline could carry
  // style attributes, which the CSP forbids; inside an <img> it cannot.
  function sceneQr(r, id) {
    var src = r.qr_img ? String(r.qr_img) : "data:image/svg+xml;base64," + b64(r.qr_svg);
    return h("img", { id: id, testid: "scan-qr", class: "qr", alt: t("wx.qr.alt"), width: "200", height: "200", src: src });
  }

  // scanBox(opts) -> {el, start, stop}: a QR that asks for a new scene
  // (opts.begin() -> a promise of the route's answer), shows it with its id
  // (small, for people with the phone simulator), waits, and calls
  // opts.onApproved(scene, answer, box) when the phone approves; denied,
  // expired and errors are shown here with a button to try again.
  // opts.prefix names the elements; data-testid attributes are the same in
  // every box (one is on screen at a time).
  function scanBox(opts) {
    var p = opts.prefix;
    var qrBox = h("div", { class: "qr-box scan-qr", id: p + "-qrbox" });
    var sceneLine = h("p", { class: "scene-line muted small", title: t("wx.scene.title"), hidden: true }, [
      t("wx.scene"), h("code", { id: p + "-scene", testid: "scan-scene" })
    ]);
    var status = h("p", { class: "scan-status", id: p + "-status", testid: "scan-status", role: "status", "data-state": "idle" });
    var err = h("p", { class: "error", id: p + "-error", testid: "scan-error", role: "alert", hidden: true });
    var refresh = h("button", { type: "button", class: "btn small", id: p + "-refresh", testid: "scan-refresh", hidden: true });
    var extra = h("div", { class: "scan-actions" }, [refresh].concat(opts.actions || []));
    var el = h("div", { class: "scan-box", id: p, testid: "scan-box" }, [
      qrBox, opts.caption ? h("p", { class: "muted small scan-caption", text: opts.caption }) : null,
      sceneLine, status, err, extra
    ]);
    var waiter = null, started = false, gen = 0, scene = null;

    function setState(st, text) {
      el.setAttribute("data-state", st);
      status.setAttribute("data-state", st);
      status.textContent = text || "";
      status.className = "scan-status" + (st === "denied" || st === "expired" ? " bad" : (st === "approved" ? " good" : ""));
    }
    function showRefresh(label) {
      refresh.textContent = label;
      refresh.hidden = false;
      refresh.disabled = false;
    }
    function stop() {
      gen++;
      if (waiter) waiter.stop();
      waiter = null;
    }
    function fail(e) {
      stop();
      setState("error", "");
      showError(err, errText(e));
      if (e && e.code === "wechat_off") wechat.off = true;
      if (opts.onError) opts.onError(e);
      // WeChat down, or the network: worth another try.  A used-up
      // challenge or a switched-off WeChat: not.
      if (!e || e.code === "wechat_unavailable" || e.status === 0 || e.status >= 500) showRefresh(t("wx.again"));
    }
    function newScene() {
      stop();
      var my = gen;
      started = true;
      scene = null;
      clear(qrBox);
      sceneLine.hidden = true;
      refresh.hidden = true;
      showError(err, "");
      setState("loading", t("wx.loading"));
      opts.begin().then(function (r) {
        if (my !== gen) return;
        if (!r || !r.scene) throw new ApiError(502, { error: "internal" });
        scene = r.scene;
        if (r.qr_img || r.qr_svg) qrBox.appendChild(sceneQr(r, p + "-qr"));
        sceneLine.lastChild.textContent = r.scene;
        sceneLine.hidden = false;
        setState("pending", t("wx.pending"));
        waiter = waitScene(r.scene, r.expires_in, function (st, answer) {
          if (my !== gen) return;
          waiter = null;
          if (st === "approved") {
            setState("approved", opts.approvedText || t("wx.approved"));
            Promise.resolve(opts.onApproved(r.scene, answer)).catch(function (e) {
              if (my !== gen) return;
              if (handleAuthLoss(e)) return;
              fail(e);
              // An approved scene is good once; a new QR is the way on
              // unless the challenge itself is gone.
              if (e && e.code !== "expired" && e.code !== "too_many_attempts") showRefresh(t("wx.refresh"));
            });
          } else if (st === "denied") {
            setState("denied", opts.deniedText || t("wx.denied"));
            showRefresh(t("wx.retry"));
          } else if (st === "failed") {
            // Confirmed on the phone, but the binding changed meanwhile
            // (another tab) or the change's verification expired.
            setState("denied", t("wx.bind.failed"));
            showRefresh(t("wx.retry"));
          } else if (st === "expired" || st === "used") {
            setState("expired", t("wx.expired"));
            qrBox.classList.add("stale");
            showRefresh(t("wx.refresh"));
          } else {
            fail(answer);
          }
        });
      }, function (e) {
        if (my !== gen) return;
        if (handleAuthLoss(e)) return;
        fail(e);
      });
    }
    refresh.addEventListener("click", function () {
      refresh.disabled = true;
      qrBox.classList.remove("stale");
      if (opts.onRefresh) opts.onRefresh();
      newScene();
    });
    return {
      el: el,
      start: function () { if (!started) newScene(); },
      restart: newScene,
      stop: stop,
      scene: function () { return scene; },
      setState: setState
    };
  }

  // Bind WeChat (图 2-6-2 → 2-6-4; after a change's verification, 图 3-6-6):
  // the QR of POST /api/factors/wechat/begin; the phone's confirm makes the
  // binding, and this page learns it by waiting, then shows 绑定成功.
  function bindWechat(grant) {
    var cancel = h("button", { type: "button", class: "btn", id: "wx-bind-cancel", testid: "wx-bind-cancel", text: t("btn.cancel") });
    var box = scanBox({
      prefix: "wx-bind",
      caption: t("wx.scan.caption"),
      approvedText: t("wx.bound"),
      deniedText: t("wx.bind.denied"),
      begin: function () {
        return api("POST", "/api/factors/wechat/begin", grant ? { grant: grant } : {});
      },
      onApproved: function () {
        m.close();
        return refreshTwoStep(t("ts.bound.ok"));
      }
    });
    var m = modal({
      id: "wx-bind-dialog", title: t("wx.bind.title"),
      body: [h("p", { class: "scan-hint", text: t("wx.bind.hint") }), box.el],
      buttons: [cancel]
    });
    onModalClose(m, function () {
      box.stop();
      // WeChat turned out to be off here: the settings row says so.
      if (wechat.off && window.location.hash === "#/2fa") setTimeout(render, 0);
    });
    cancel.addEventListener("click", function () { m.close(); });
    box.start();
    return m;
  }

  // The second-factor dialog's 扫码授权 tab (图 2-7-2 left, 3-5-2 left,
  // 3-6-2 left): a QR for this challenge (sign-in: /api/login/scan; unbind or
  // change: /api/verify/scan); once approved, the same verify route as a
  // code, with method "wechat" and the scene.  At sign-in, "send to my
  // WeChat" pushes the request instead (/api/login/push) and shows the
  // two-digit number to pick on the phone.
  // done(response) as for a code; toCode() shows the 验证码 tab.
  function wechatScanPanel(panel, opts, done, toCode) {
    var login = opts.mode === "login";
    var useCode = h("button", { type: "button", class: "link-btn", id: "sf-scan-usecode", testid: "sf-scan-usecode",
      text: t("wx.usecode"), hidden: true });
    var downHint = h("p", { class: "muted small", id: "sf-scan-down", testid: "sf-scan-down", text: t("wx.down.hint"), hidden: true });
    var pushBtn = login ? h("button", { type: "button", class: "link-btn", id: "sf-push", testid: "sf-push",
      text: t("wx.push"), hidden: wechat.pushOff }) : null;
    var pushNote = h("p", { class: "muted small", id: "sf-push-note", testid: "sf-push-note", hidden: true });
    var pushNumber = h("p", { class: "push-number", id: "sf-push-number", testid: "sf-push-number" });
    var pushBox = h("div", { class: "push-box", id: "sf-push-box", testid: "sf-push-box", hidden: true }, [
      h("p", { text: t("wx.push.sent") }), pushNumber
    ]);
    var pushing = false;

    function verifyScene(scene) {
      var req = login
        ? api("POST", "/api/login/verify", { challenge: opts.challenge, method: "wechat", scene: scene })
        : api("POST", "/api/verify", { challenge: opts.challenge, method: "wechat", scene: scene });
      return req.then(done);
    }
    var box = scanBox({
      prefix: "sf-scan",
      begin: function () {
        if (pushing) {
          return api("POST", "/api/login/push", { challenge: opts.challenge }).then(function (r) {
            pushNumber.textContent = r && r.number !== undefined ? String(r.number) : "";
            return r;
          });
        }
        return api("POST", login ? "/api/login/scan" : "/api/verify/scan", { challenge: opts.challenge });
      },
      onApproved: verifyScene,
      // Another try after a push goes back to the QR.
      onRefresh: function () {
        pushing = false;
        pushBox.hidden = true;
        if (pushBtn) pushBtn.hidden = wechat.pushOff;
        box.el.classList.remove("push-mode");
      },
      onError: function (e) {
        if (e && e.code === "push_off") {
          wechat.pushOff = true;
          pushing = false;
          if (pushBtn) pushBtn.hidden = true;
          pushBox.hidden = true;
          pushNote.textContent = t("wx.push.off");
          pushNote.hidden = false;
          box.restart();
          return;
        }
        if (e && (e.code === "wechat_unavailable" || e.code === "wechat_off")) {
          useCode.hidden = false;
          downHint.hidden = false;
        }
      },
      actions: [useCode]
    });
    useCode.addEventListener("click", toCode);
    if (pushBtn) {
      pushBtn.addEventListener("click", function () {
        pushing = true;
        pushBtn.hidden = true;
        pushBox.hidden = false;
        box.el.classList.add("push-mode");
        box.restart();
      });
    }
    // Between the hint (打开【微信】扫码确认授权) and the alternative (扫描二维码失效？).
    panel.insertBefore(h("div", {}, [box.el, downHint, pushBox, pushBtn, pushNote]), panel.lastChild);
    return box;
  }

  // ---- client-specific passwords (图 4-1-2, 4-1-3) -------------------------

  function renderAppPasswords(view) {
    var err = errorBox("ap-error");
    var tbody = h("tbody", { id: "ap-rows" }, [h("tr", {}, [h("td", { colspan: "4", class: "muted", text: t("loading") })])]);
    var gen = h("button", { type: "button", class: "btn primary", id: "ap-generate", testid: "ap-generate", text: t("ap.generate") });
    var clr = h("button", { type: "button", class: "btn", id: "ap-clear", testid: "ap-clear", text: t("ap.clear") });
    page(view, "page-apppw", t("ap.title"), [
      h("div", { class: "toolbar" }, [gen, clr]),
      err,
      h("table", { class: "list", id: "ap-table", testid: "ap-table" }, [
        h("thead", {}, [h("tr", {}, [
          h("th", { scope: "col", text: t("ap.col.name") }),
          h("th", { scope: "col", text: t("ap.col.used") }),
          h("th", { scope: "col", text: t("ap.col.created") }),
          h("th", { scope: "col", text: t("ap.col.actions") })
        ])]),
        tbody
      ]),
      h("p", { class: "muted small", text: t("ap.path") })
    ]);

    function load() {
      return api("GET", "/api/app-passwords").then(function (list) {
        clear(tbody);
        if (!list || !list.length) {
          tbody.appendChild(h("tr", { id: "ap-empty", testid: "ap-empty" }, [
            h("td", { colspan: "4", class: "empty", text: t("ap.none") })]));
          clr.disabled = true;
          return;
        }
        clr.disabled = false;
        list.forEach(function (a) {
          var del = h("button", { type: "button", class: "btn small", testid: "ap-delete", "data-id": String(a.id),
            text: t("btn.delete"), "aria-label": t("btn.delete") + " " + a.name });
          del.addEventListener("click", function () {
            confirmBox(t("ap.delete.confirm", { name: a.name }), t("btn.delete"), function () {
              return api("DELETE", "/api/app-passwords/" + encodeURIComponent(a.id)).then(load);
            });
          });
          var used = a.last_used ? fmtTime(a.last_used) + (a.last_proto ? " · " + String(a.last_proto).toUpperCase() : "") : t("ap.never");
          tbody.appendChild(h("tr", { testid: "ap-row", "data-id": String(a.id), "data-name": a.name }, [
            h("td", { class: "name", text: a.name }),
            h("td", { text: used, title: a.last_addr || "" }),
            h("td", { text: fmtTime(a.created) }),
            h("td", { class: "actions" }, [del])
          ]));
        });
      }, function (e) { if (!handleAuthLoss(e)) showError(err, errText(e)); });
    }
    load();

    gen.addEventListener("click", function () { generateDialog(load); });
    clr.addEventListener("click", function () {
      confirmBox(t("ap.clear.confirm"), t("ap.clear"), function () {
        return api("POST", "/api/app-passwords/clear", {}).then(load);
      });
    });
  }

  function generateDialog(reload) {
    var err = errorBox("ap-gen-error");
    var name = h("input", { id: "ap-name", testid: "ap-name", type: "text", maxlength: "64", placeholder: t("ap.name.ph") });
    var ok = h("button", { type: "submit", class: "btn primary", id: "ap-gen-ok", testid: "ap-gen-ok", text: t("ap.gen.submit"), form: "ap-gen-form" });
    var cancel = h("button", { type: "button", class: "btn", id: "ap-gen-cancel", testid: "ap-gen-cancel", text: t("btn.cancel") });
    var form = h("form", { id: "ap-gen-form", novalidate: true }, [
      h("ul", { class: "notes" }, [
        h("li", { text: t("ap.note1") }), h("li", { text: t("ap.note2") }),
        h("li", { text: t("ap.note3") }), h("li", { text: t("ap.note4") })
      ]),
      field("ap-name", t("ap.name"), name),
      err
    ]);
    var m = modal({ id: "ap-gen-dialog", title: t("ap.gen.title"), body: [form], buttons: [ok, cancel] });
    name.focus();
    cancel.addEventListener("click", m.close);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var n = name.value.trim();
      if (!n) { showError(err, t("ap.name.missing")); return; }
      ok.disabled = true;
      showError(err, "");
      api("POST", "/api/app-passwords", { name: n }).then(function (r) {
        m.close();
        resultDialog(r, reload);
      }, function (e) {
        ok.disabled = false;
        if (!handleAuthLoss(e)) showError(err, errText(e));
      });
    });
  }

  function resultDialog(r, reload) {
    var groups = String(r.password).split(/\s+/).filter(Boolean);
    var pw = h("span", { class: "password", id: "ap-password", testid: "ap-password", "data-password": r.password },
      groups.reduce(function (acc, g, i) {
        if (i) acc.push(" ");   // a real space: copying by hand gets "xxxx xxxx xxxx xxxx"
        acc.push(h("span", { class: "group", text: g }));
        return acc;
      }, []));
    pw.setAttribute("aria-label", r.password);
    var copy = h("button", { type: "button", class: "btn small", id: "ap-copy", testid: "ap-copy", text: t("btn.copy") });
    var copyMsg = h("span", { class: "muted", id: "ap-copy-status", testid: "ap-copy-status", role: "status" });
    copy.addEventListener("click", function () {
      copyText(r.password).then(function () {
        copy.textContent = t("btn.copied");
        copyMsg.textContent = "";
      }, function () {
        copyMsg.textContent = t("ap.copy.failed");
        selectNode(pw);
      });
    });
    var s = (state.me && state.me.settings) || {};
    function portsOf(p) {
      p = p || {};
      return t("ap.set.ports", { ssl: p.ssl_port || t("ap.set.off"), plain: p.port || t("ap.set.off") });
    }
    function row(label, host, ports, key) {
      return h("tr", { testid: "ap-set-" + key }, [h("th", { scope: "row", text: label }), h("td", { text: host || "" }), h("td", { text: ports || "" })]);
    }
    var table = h("table", { class: "settings", id: "ap-settings", testid: "ap-settings" }, [h("tbody", {}, [
      row(t("ap.set.address"), state.me ? state.me.user : "", "", "address"),
      row(t("ap.set.imap"), s.imap && s.imap.host, portsOf(s.imap), "imap"),
      row(t("ap.set.pop3"), s.pop3 && s.pop3.host, portsOf(s.pop3), "pop3"),
      row(t("ap.set.smtp"), s.smtp && s.smtp.host, portsOf(s.smtp), "smtp")
    ])]);
    var done = h("button", { type: "button", class: "btn primary", id: "ap-done", testid: "ap-done", text: t("btn.done") });
    var m = modal({
      id: "ap-result", title: t("ap.result.title"), wide: true,
      body: [
        h("p", { class: "muted" }, [t("ap.result.label") + " ", h("strong", { id: "ap-result-name", text: r.name })]),
        h("div", { class: "pw-row" }, [pw, copy, copyMsg]),
        h("p", { class: "warn", text: t("ap.result.warn") }),
        h("h3", { text: t("ap.result.settings") }),
        table
      ],
      buttons: [done],
      onCancel: reload
    });
    done.addEventListener("click", function () { m.close(); reload(); });
    done.focus();
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return legacyCopy(text); });
    }
    return legacyCopy(text);
  }

  // Without the async clipboard: a hidden textarea and execCommand("copy").
  function legacyCopy(text) {
    return new Promise(function (resolve, reject) {
      var ta = h("textarea", { class: "offscreen", readonly: true, "aria-hidden": "true" });
      ta.value = text;
      document.body.appendChild(ta);
      ta.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(ta);
      if (ok) resolve(); else reject(new Error("copy"));
    });
  }

  function selectNode(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  // ---- trusted devices -----------------------------------------------------

  function renderDevices(view) {
    var err = errorBox("dev-error");
    var tbody = h("tbody", {}, [h("tr", {}, [h("td", { colspan: "6", class: "muted", text: t("loading") })])]);
    page(view, "page-devices", t("dev.title"), [
      h("p", { class: "muted", text: t("dev.intro") }),
      err,
      h("table", { class: "list", id: "dev-table", testid: "dev-table" }, [
        h("thead", {}, [h("tr", {}, [
          h("th", { scope: "col", text: t("dev.col.device") }),
          h("th", { scope: "col", text: t("dev.col.addr") }),
          h("th", { scope: "col", text: t("dev.col.used") }),
          h("th", { scope: "col", text: t("dev.col.created") }),
          h("th", { scope: "col", text: t("dev.col.expires") }),
          h("th", { scope: "col", text: t("dev.col.actions") })
        ])]),
        tbody
      ])
    ]);
    function load() {
      return api("GET", "/api/devices").then(function (list) {
        clear(tbody);
        if (!list || !list.length) {
          tbody.appendChild(h("tr", { id: "dev-empty", testid: "dev-empty" }, [h("td", { colspan: "6", class: "empty", text: t("dev.none") })]));
          return;
        }
        list.forEach(function (d) {
          var rm = h("button", { type: "button", class: "btn small", testid: "dev-revoke", "data-id": String(d.id), text: t("btn.revoke") });
          rm.addEventListener("click", function () {
            confirmBox(t("dev.revoke.confirm"), t("btn.revoke"), function () {
              return api("DELETE", "/api/devices/" + encodeURIComponent(d.id)).then(load);
            });
          });
          tbody.appendChild(h("tr", { testid: "dev-row", "data-id": String(d.id), "data-current": d.current ? "1" : "0" }, [
            h("td", {}, [d.label || t("none"), d.current ? h("span", { class: "badge ok", text: t("dev.current") }) : null]),
            h("td", { text: d.last_addr || t("none") }),
            h("td", { text: fmtTime(d.last_used) }),
            h("td", { text: fmtTime(d.created) }),
            h("td", { text: fmtTime(d.expires) }),
            h("td", { class: "actions" }, [rm])
          ]));
        });
      }, function (e) { if (!handleAuthLoss(e)) showError(err, errText(e)); });
    }
    load();
  }

  // ---- recent sign-ins -----------------------------------------------------

  function methodText(m) {
    if (!m) return t("none");
    var key = "method." + m;
    return I18N.zh[key] !== undefined ? t(key) : m;
  }

  function renderSignins(view) {
    var err = errorBox("si-error");
    var tbody = h("tbody", {}, [h("tr", {}, [h("td", { colspan: "5", class: "muted", text: t("loading") })])]);
    page(view, "page-signins", t("si.title"), [
      err,
      h("table", { class: "list", id: "si-table", testid: "si-table" }, [
        h("thead", {}, [h("tr", {}, [
          h("th", { scope: "col", text: t("si.col.time") }),
          h("th", { scope: "col", text: t("si.col.addr") }),
          h("th", { scope: "col", text: t("si.col.proto") }),
          h("th", { scope: "col", text: t("si.col.method") }),
          h("th", { scope: "col", text: t("si.col.result") })
        ])]),
        tbody
      ])
    ]);
    api("GET", "/api/signins").then(function (list) {
      clear(tbody);
      if (!list || !list.length) {
        tbody.appendChild(h("tr", { id: "si-empty", testid: "si-empty" }, [h("td", { colspan: "5", class: "empty", text: t("si.none") })]));
        return;
      }
      list.forEach(function (r) {
        var proto = r.proto === "web" ? t("si.proto.web") : (r.proto ? String(r.proto).toUpperCase() : t("none"));
        var ok = r.result === "ok";
        tbody.appendChild(h("tr", { testid: "si-row", "data-result": r.result, "data-proto": r.proto || "", "data-method": r.method || "" }, [
          h("td", { text: fmtTime(r.time) }),
          h("td", { text: r.addr || t("none") }),
          h("td", { text: proto }),
          h("td", { text: methodText(r.method) }),
          h("td", {}, [h("span", { class: "badge " + (ok ? "ok" : "bad"), text: ok ? t("si.ok") : t("si.fail") })])
        ]));
      });
    }, function (e) { if (!handleAuthLoss(e)) showError(err, errText(e)); });
  }

  // ---- start ---------------------------------------------------------------

  document.getElementById("lang-switch").addEventListener("click", function () {
    state.lang = state.lang === "en" ? "zh" : "en";
    try { window.localStorage.setItem(LANG_KEY, state.lang); } catch (e) { /* storage off */ }
    applyLang();
    render();
  });

  document.getElementById("logout").addEventListener("click", function () {
    document.getElementById("toast").hidden = true;
    api("POST", "/api/logout", {}).catch(function () { /* signed out either way */ }).then(function () {
      state.me = null;
      wantedRoute = null;
      go("#/login");
    });
  });

  window.addEventListener("hashchange", render);

  chooseLang().then(function (lang) {
    state.lang = lang;
    applyLang();
    return loadMe().catch(function () { state.me = null; });
  }).then(function () {
    document.body.setAttribute("data-ready", "1");
    render();
  });
})();
