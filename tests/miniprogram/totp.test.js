"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const { lib } = require("./harness");

const { sha1, hmacSha1 } = lib("sha1");
const totp = lib("totp");

// RFC 6238 appendix B: the SHA-1 seed is the ASCII "12345678901234567890".
const RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const hex = (b) => Buffer.from(b).toString("hex");
const bytes = (s) => [...Buffer.from(s, "utf8")];

test("sha1: FIPS 180 vectors and node's crypto agree", () => {
  assert.equal(hex(sha1(bytes("abc"))), "a9993e364706816aba3e25717850c26c9cd0d89d");
  assert.equal(hex(sha1([])), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  assert.equal(hex(sha1(bytes("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
               "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  for (const n of [55, 56, 63, 64, 65, 119, 120, 1000]) {   // padding edges
    const b = crypto.randomBytes(n);
    assert.equal(hex(sha1([...b])), crypto.createHash("sha1").update(b).digest("hex"), "length " + n);
  }
});

test("hmac-sha1: RFC 2202 vectors and a long key", () => {
  assert.equal(hex(hmacSha1(new Array(20).fill(0x0b), bytes("Hi There"))),
               "b617318655057264e28bc0b6fb378c8ef146be00");
  assert.equal(hex(hmacSha1(bytes("Jefe"), bytes("what do ya want for nothing?"))),
               "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
  const key = crypto.randomBytes(100), msg = crypto.randomBytes(77);
  assert.equal(hex(hmacSha1([...key], [...msg])),
               crypto.createHmac("sha1", key).update(msg).digest("hex"));
});

test("base32 decoding: RFC 4648, lowercase, spaces, padding", () => {
  assert.equal(Buffer.from(totp.base32Decode(RFC_SECRET)).toString(), "12345678901234567890");
  assert.equal(Buffer.from(totp.base32Decode("mzxw6ytboi======")).toString(), "foobar");
  assert.equal(Buffer.from(totp.base32Decode("MZXW 6YTB OI")).toString(), "foobar");
  assert.throws(() => totp.base32Decode("MZXW1"), /base32/);
});

test("totp: RFC 6238 SHA-1 vectors (8 digits) and their 6-digit codes", () => {
  const vectors = [
    [59, "94287082"], [1111111109, "07081804"], [1111111111, "14050471"],
    [1234567890, "89005924"], [2000000000, "69279037"], [20000000000, "65353130"]
  ];
  for (const [t, code] of vectors) {
    assert.equal(totp.totp(RFC_SECRET, t * 1000, { digits: 8 }).code, code, "T=" + t);
    assert.equal(totp.totp(RFC_SECRET, t * 1000).code, code.slice(2), "T=" + t + " 6 digits");
  }
  assert.equal(totp.totp(RFC_SECRET, 59000).code, "287082");
});

test("totp: the seconds left in the period", () => {
  assert.equal(totp.totp(RFC_SECRET, 59000).remaining, 1);
  assert.equal(totp.totp(RFC_SECRET, 60000).remaining, 30);
  assert.equal(totp.totp(RFC_SECRET, 60999).remaining, 30);
  assert.equal(totp.totp(RFC_SECRET, 61000).remaining, 29);
  // the code changes exactly at the period boundary
  assert.notEqual(totp.totp(RFC_SECRET, 59999).code, totp.totp(RFC_SECRET, 60000).code);
  assert.equal(totp.totp(RFC_SECRET, 30000).code, totp.totp(RFC_SECRET, 59999).code);
});
