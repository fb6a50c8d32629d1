// An expired QR (scenes are single use and minutes long): the page says
// 二维码已过期 by itself, the phone's late answer is refused, and 刷新二维码
// gives a new QR that works.  run.py starts a server with a short scene
// lifetime for this (MFA_SHORT_URL, [wechat] scene_ttl); on a binary
// without that setting the test waits out the default lifetime (5 minutes)
// on the main server, for the sign-in QR only.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { BASE as MAIN, STANDIN, USERS, Phone, launch, newContext, newPage, checkPage, shooter, open, signIn, signOut, bindWechat, scanScene } from "../lib.mjs";

const USER = "wexp";
const SHORT = process.env.MFA_SHORT_URL || "";
const BASE = SHORT || MAIN;
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

// Waits for the scan box to say "expired" (the server's answer to the wait,
// or the page's own clock past the scene's lifetime).
async function waitExpired(page) {
  await page.waitForSelector("[data-testid=scan-status][data-state=expired]", { timeout: SHORT ? 60000 : 400000 });
  assert.equal((await page.textContent("[data-testid=scan-status]")).trim(), "二维码已过期，请刷新二维码");
  assert.equal((await page.textContent("[data-testid=scan-refresh]")).trim(), "刷新二维码");
}

test("an expired QR: told so, the phone is refused, a refreshed QR works", { timeout: SHORT ? 180000 : 600000 }, async () => {
  const shot = shooter("wechat-expired");
  const phone = new Phone("o-wexp-1", { base: BASE, standinBase: STANDIN });
  const ctx = await newContext(browser);
  const page = await newPage(ctx);
  await open(page, "#/login", BASE);
  assert.equal(await signIn(page, USER, USERS[USER]), "ok");

  if (SHORT) {
    // Bind: the first QR expires unanswered.
    await page.click("#bind-wechat");
    await page.waitForSelector("#wx-bind-dialog");
    const old = await scanScene(page);
    await waitExpired(page);
    await shot(page, "bind-qr-expired");
    const late = await phone.run("answer", old, "confirm");
    assert.notEqual(late.status, 0, "an expired scene takes no answer");
    assert.match(late.stderr, /expired/);
    await page.click("[data-testid=scan-refresh]");
    const scene = await scanScene(page);
    assert.notEqual(scene, old);
    await phone.answer(scene, "confirm");
    await page.waitForSelector("#factor-wechat[data-bound='1']");
  } else {
    await bindWechat(page, phone);
  }
  await signOut(page);

  // Sign-in: the QR expires; the page says so; a refreshed one signs in.
  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor");
  const old = await scanScene(page);
  await waitExpired(page);
  assert.ok(await page.isVisible("#sf-dialog"), "still in the second step");
  await shot(page, "signin-qr-expired");
  assert.notEqual((await phone.run("answer", old, "temporary")).status, 0, "an expired scene takes no answer");
  await page.click("[data-testid=scan-refresh]");
  const scene = await scanScene(page);
  assert.notEqual(scene, old);
  await shot(page, "signin-qr-refreshed");
  await phone.answer(scene, "temporary");
  await page.waitForSelector("#page-2fa");
  checkPage(page);
  await ctx.close();
});
