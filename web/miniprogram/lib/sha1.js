// sha1.js - SHA-1 and HMAC-SHA1 in plain JavaScript (FIPS 180-4, RFC 2104).
//
// The mini program's runtime has no Node crypto and no WebCrypto that all
// base libraries share, so the phone computes its codes with this.  Bytes
// are plain arrays (or Uint8Arrays) of numbers 0..255.
"use strict";

function rotl(x, n) { return (x << n) | (x >>> (32 - n)); }

function sha1(bytes) {
  var len = bytes.length;
  // pad: 0x80, zeros, then the length in bits as a 64-bit big-endian number
  var total = ((len + 8) >>> 6 << 6) + 64;
  var m = new Array(total);
  var i;
  for (i = 0; i < len; i++) m[i] = bytes[i] & 0xff;
  m[len] = 0x80;
  for (i = len + 1; i < total; i++) m[i] = 0;
  var bitsHi = Math.floor(len / 0x20000000); // len * 8 / 2^32
  var bitsLo = (len * 8) >>> 0;
  m[total - 8] = (bitsHi >>> 24) & 0xff; m[total - 7] = (bitsHi >>> 16) & 0xff;
  m[total - 6] = (bitsHi >>> 8) & 0xff;  m[total - 5] = bitsHi & 0xff;
  m[total - 4] = (bitsLo >>> 24) & 0xff; m[total - 3] = (bitsLo >>> 16) & 0xff;
  m[total - 2] = (bitsLo >>> 8) & 0xff;  m[total - 1] = bitsLo & 0xff;

  var h0 = 0x67452301, h1 = 0xefcdab89, h2 = 0x98badcfe, h3 = 0x10325476, h4 = 0xc3d2e1f0;
  var w = new Array(80);
  for (var off = 0; off < total; off += 64) {
    for (i = 0; i < 16; i++) {
      w[i] = (m[off + 4 * i] << 24) | (m[off + 4 * i + 1] << 16) |
             (m[off + 4 * i + 2] << 8) | m[off + 4 * i + 3];
    }
    for (i = 16; i < 80; i++) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    var a = h0, b = h1, c = h2, d = h3, e = h4, f, k, t;
    for (i = 0; i < 80; i++) {
      if (i < 20) { f = (b & c) | (~b & d); k = 0x5a827999; }
      else if (i < 40) { f = b ^ c ^ d; k = 0x6ed9eba1; }
      else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8f1bbcdc; }
      else { f = b ^ c ^ d; k = 0xca62c1d6; }
      t = (rotl(a, 5) + f + e + k + w[i]) | 0;
      e = d; d = c; c = rotl(b, 30); b = a; a = t;
    }
    h0 = (h0 + a) | 0; h1 = (h1 + b) | 0; h2 = (h2 + c) | 0;
    h3 = (h3 + d) | 0; h4 = (h4 + e) | 0;
  }
  var out = [];
  [h0, h1, h2, h3, h4].forEach(function (h) {
    out.push((h >>> 24) & 0xff, (h >>> 16) & 0xff, (h >>> 8) & 0xff, h & 0xff);
  });
  return out;
}

function hmacSha1(key, msg) {
  var block = 64, i;
  var k = key.length > block ? sha1(key) : Array.prototype.slice.call(key);
  while (k.length < block) k.push(0);
  var ipad = new Array(block), opad = new Array(block);
  for (i = 0; i < block; i++) { ipad[i] = k[i] ^ 0x36; opad[i] = k[i] ^ 0x5c; }
  var inner = sha1(ipad.concat(Array.prototype.slice.call(msg)));
  return sha1(opad.concat(inner));
}

module.exports = { sha1: sha1, hmacSha1: hmacSha1 };
