// scene.js - what a scanned QR code means.
//
// A *scene* (web/API.md, "The mini program") is the random id, at most 32
// characters of [A-Za-z0-9], that the web page's QR code carries.  It reaches
// the phone in one of these ways:
//
//   1. a mini-program code (wxacode.getUnlimited): wx.scanCode answers with
//      res.path = "pages/confirm/confirm?scene=XXXX" (the scene URL-encoded),
//      and WeChat's own scanner opens the page with options.scene = "XXXX";
//   2. an ordinary QR holding the link https://HOST/mp?scene=XXXX: wx.scanCode
//      answers with res.result = the link, and WeChat's scanner (with
//      "扫普通链接二维码打开小程序" configured) opens the page with
//      options.q = encodeURIComponent(link).
//
// Anything else (a bare string, another site's link, a product barcode) is
// not ours: null.  Pure functions; no wx.
"use strict";

var SCENE_RE = /^[A-Za-z0-9]{1,32}$/;

function isScene(s) { return typeof s === "string" && SCENE_RE.test(s); }

function safeDecode(s) {
  try { return decodeURIComponent(String(s).replace(/\+/g, " ")); }
  catch (e) { return null; }
}

// The value of `name` in a query string "a=1&b=2" (decoded), or null.
function queryParam(query, name) {
  var parts = String(query).split("&");
  for (var i = 0; i < parts.length; i++) {
    var eq = parts[i].indexOf("=");
    var k = eq < 0 ? parts[i] : parts[i].slice(0, eq);
    if (safeDecode(k) === name) return eq < 0 ? "" : safeDecode(parts[i].slice(eq + 1));
  }
  return null;
}

// "pages/confirm/confirm?scene=XXXX" (with or without the leading "/").
function fromPath(path) {
  if (typeof path !== "string") return null;
  var m = /^\/?pages\/[A-Za-z0-9_\/-]+\?([^#]*)$/.exec(path.trim());
  if (!m) return null;
  var s = queryParam(m[1], "scene");
  // WeChat URL-encodes the scene inside the path; a scene of [A-Za-z0-9]
  // survives one more decode unchanged.
  return isScene(s) ? s : null;
}

// "https://HOST/mp?scene=XXXX" (also "/mp/?..."); https only.
function fromLink(link) {
  if (typeof link !== "string") return null;
  var m = /^https:\/\/([^\/?#@\s]+)\/mp\/?\?([^#\s]*)(#\S*)?$/i.exec(link.trim());
  if (!m) return null;
  var s = queryParam(m[2], "scene");
  return isScene(s) ? s : null;
}

// One scanned text (a path or a link).
function parse(text) {
  return fromPath(text) || fromLink(text);
}

// The answer of wx.scanCode: {result, path, scanType, charSet}.
function fromScanResult(res) {
  if (!res) return null;
  return fromPath(res.path) || parse(res.result);
}

// The options a page's onLoad gets: {scene} (mini-program code, URL-encoded)
// or {q} (an ordinary QR link, URL-encoded).
function fromLaunchOptions(options) {
  if (!options) return null;
  if (options.scene != null) {
    var s = safeDecode(options.scene);
    return isScene(s) ? s : null;
  }
  if (options.q != null) {
    var link = safeDecode(options.q);
    return link ? fromLink(link) : null;
  }
  return null;
}

module.exports = {
  isScene: isScene,
  parse: parse,
  fromPath: fromPath,
  fromLink: fromLink,
  fromScanResult: fromScanResult,
  fromLaunchOptions: fromLaunchOptions
};
