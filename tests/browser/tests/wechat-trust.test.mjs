// Sign in by scan with trust (图 2-7-2 left, 2-7-3): after the password the
// dialog offers 扫码授权 (first) and 验证码; the phone shows who is asking
// (mailbox, the browser's address, time) and answers 确认授权并信任此设备
// ("trust"): the browser proceeds at once, gets a device cookie, and the
// next sign-in from this browser skips the second step.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { USERS, Phone, launch, checkPage, shooter, signIn, signOut, scanScene, apiGet, withWechatBound } from "../lib.mjs";

const USER = "wtrust";
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("sign in by scan with trust; the next sign-in skips the step", async () => {
  const shot = shooter("wechat-trust");
  const phone = new Phone("o-wtrust-1");
  const { ctx, page } = await withWechatBound(browser, USER, phone);
  await signOut(page);

  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor");
  // Both tabs; the scan tab first, its QR already waiting.
  assert.ok(await page.isVisible("#sf-tab-scan"));
  assert.ok(await page.isVisible("#sf-tab-code"));
  assert.equal(await page.getAttribute("#sf-tab-scan", "aria-selected"), "true");
  assert.equal((await page.textContent("#sf-tab-scan")).trim(), "扫码授权");
  assert.equal((await page.textContent("#sf-tab-code")).trim(), "验证码");
  const scene = await scanScene(page);
  assert.ok((await page.textContent("#sf-panel-scan")).includes("打开【微信】扫码确认授权"));
  assert.ok(await page.isHidden("#sf-ok"), "no OK button on the scan tab: the phone decides");
  await shot(page, "signin-scan");

  const req = await phone.show(scene);
  assert.equal(req.kind, "signin");
  assert.equal(req.mailbox, USER);
  assert.equal(req.addr, "127.0.0.1");
  assert.ok(Math.abs(req.time - Date.now() / 1000) < 120, "the request's time is now");

  await phone.answer(scene, "trust");
  await page.waitForSelector("#page-2fa");
  const me = await apiGet(page, "/api/me");
  assert.equal(me.body.user, USER);
  assert.ok((await ctx.cookies()).some((c) => c.name === "mfa_device" && c.httpOnly && c.secure), "trusted: a device cookie");
  await shot(page, "signed-in");
  // The scene is used: a second answer is refused.
  assert.notEqual((await phone.run("answer", scene, "trust")).status, 0);
  await signOut(page);

  // Trusted: the password alone.
  assert.equal(await signIn(page, USER, USERS[USER]), "ok");
  await shot(page, "trusted-skips");

  // The recent sign-ins show the WeChat sign-in.
  await page.click("#nav-signins");
  await page.waitForSelector("[data-testid=si-row]");
  const methods = await page.$$eval("[data-testid=si-row]", (rows) => rows.map((r) => r.getAttribute("data-method")));
  assert.ok(methods.includes("wechat"), "a sign-in by WeChat is listed: " + methods.join(","));
  await shot(page, "recent-signins");
  checkPage(page);
  await ctx.close();
});
