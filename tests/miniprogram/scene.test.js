"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { lib } = require("./harness");
const scene = lib("scene");

test("scene: the https link of the web page's QR code", () => {
  assert.equal(scene.parse("https://mail.example.com/mp?scene=Ab12"), "Ab12");
  assert.equal(scene.parse("https://127.0.0.1:10443/mp?scene=Ab12"), "Ab12");
  assert.equal(scene.parse("  https://mail.example.com/mp/?x=1&scene=Zz9#frag "), "Zz9");
  assert.equal(scene.parse("https://mail.example.com/mp?scene=" + "a".repeat(32)), "a".repeat(32));
});

test("scene: a mini-program code's path", () => {
  assert.equal(scene.fromScanResult({ scanType: "WX_CODE", path: "pages/confirm/confirm?scene=Ab12" }), "Ab12");
  assert.equal(scene.fromScanResult({ path: "/pages/confirm/confirm?scene=Ab12", result: "" }), "Ab12");
  assert.equal(scene.fromScanResult({ scanType: "QR_CODE", result: "https://h/mp?scene=Q1" }), "Q1");
});

test("scene: launch options (mini-program code scene, or q= of a link)", () => {
  assert.equal(scene.fromLaunchOptions({ scene: "Ab12" }), "Ab12");
  assert.equal(scene.fromLaunchOptions({ scene: encodeURIComponent("Ab12") }), "Ab12");
  assert.equal(scene.fromLaunchOptions({ q: encodeURIComponent("https://h.example/mp?scene=K9") }), "K9");
  assert.equal(scene.fromLaunchOptions({}), null);
  assert.equal(scene.fromLaunchOptions({ scene: "a b" }), null);
});

test("scene: anything else is not ours", () => {
  for (const s of [
    "Ab12",                                            // a bare string
    "http://mail.example.com/mp?scene=Ab12",           // not https
    "https://mail.example.com/login?scene=Ab12",       // another path
    "https://mail.example.com/mp?scene=",              // empty
    "https://mail.example.com/mp?scene=" + "a".repeat(33),
    "https://mail.example.com/mp?scene=ab%2F12",
    "https://mail.example.com/mp?scene=ab-12",
    "https://user@evil.example/mp?scene=Ab12",
    "https://mail.example.com/mp?scene=%E0%A4%A",      // bad escape
    "6901234567892", "", null, undefined, 42
  ]) {
    assert.equal(scene.parse(s), null, String(s));
  }
  assert.equal(scene.fromScanResult(null), null);
  assert.equal(scene.fromScanResult({ result: "WIFI:S:x;;" }), null);
});
