// Sign in by scan, 临时登录 (temporary, 图 2-7-3): signed in without a
// device cookie, and the next sign-in from this browser asks again.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { USERS, Phone, launch, checkPage, shooter, signIn, signOut, scanScene, withWechatBound } from "../lib.mjs";

const USER = "wtemp";
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("sign in by scan, temporary; the next sign-in asks again", async () => {
  const shot = shooter("wechat-temp");
  const phone = new Phone("o-wtemp-1");
  const { ctx, page } = await withWechatBound(browser, USER, phone);
  await signOut(page);

  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor");
  let scene = await scanScene(page);
  // The page's trust box does not count for a scan: leave it ticked.
  await page.click("#sf-tab-code");
  await page.check("#sf-trust");
  await page.click("#sf-tab-scan");
  assert.equal((await page.textContent("[data-testid=scan-scene]")).trim(), scene, "the same QR when coming back");
  await phone.answer(scene, "temporary");
  await page.waitForSelector("#page-2fa");
  assert.ok(!(await ctx.cookies()).some((c) => c.name === "mfa_device"), "temporary: no device cookie");
  await shot(page, "signed-in-temporary");
  await signOut(page);

  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor", "not trusted: asked again");
  scene = await scanScene(page);
  await shot(page, "asked-again");
  await phone.answer(scene, "temporary");
  await page.waitForSelector("#page-2fa");
  checkPage(page);
  await ctx.close();
});
