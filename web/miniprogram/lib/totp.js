// totp.js - the 6-digit codes the accounts page shows (RFC 4226 / RFC 6238).
//
// The server hands each bound mailbox's secret to the phone once
// (GET /api/mp/accounts, base32), so the codes work offline, the way the
// manual's 图 2-7-4 describes: the code is the fallback when the phone cannot
// be reached by the scan flow.
"use strict";
var hmacSha1 = require("./sha1").hmacSha1;

var B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

// base32 (RFC 4648) to bytes; spaces, dashes and '=' padding are ignored,
// lowercase is accepted.  Throws on any other character.
function base32Decode(text) {
  var s = String(text).toUpperCase().replace(/[\s=-]/g, "");
  var out = [], bits = 0, value = 0;
  for (var i = 0; i < s.length; i++) {
    var v = B32.indexOf(s.charAt(i));
    if (v < 0) throw new Error("bad base32 secret");
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
    value &= 0xff; // keep only what is still unread (< 8 bits)
  }
  return out;
}

// HOTP(key bytes, counter) with `digits` digits, zero-padded.  The counter
// may exceed 2^32 (RFC 6238's T = 20000000000 vector does).
function hotp(key, counter, digits) {
  digits = digits || 6;
  var hi = Math.floor(counter / 4294967296), lo = counter % 4294967296;
  var msg = [
    (hi >>> 24) & 0xff, (hi >>> 16) & 0xff, (hi >>> 8) & 0xff, hi & 0xff,
    (lo >>> 24) & 0xff, (lo >>> 16) & 0xff, (lo >>> 8) & 0xff, lo & 0xff
  ];
  var h = hmacSha1(key, msg);
  var o = h[19] & 0x0f;
  var bin = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  var code = String(bin % Math.pow(10, digits));
  while (code.length < digits) code = "0" + code;
  return code;
}

// The code for a secret (base32) at `nowMs` (milliseconds since the epoch),
// plus how many whole seconds of its period are left (1..period).
function totp(secret, nowMs, opts) {
  opts = opts || {};
  var period = opts.period || 30, digits = opts.digits || 6;
  var t = Math.floor(nowMs / 1000);
  var counter = Math.floor(t / period);
  return {
    code: hotp(base32Decode(secret), counter, digits),
    remaining: period - (t % period),
    period: period
  };
}

module.exports = { base32Decode: base32Decode, hotp: hotp, totp: totp };
