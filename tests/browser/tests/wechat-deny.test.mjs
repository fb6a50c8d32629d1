// Deny (图 2-7-3, 取消): the phone cancels the sign-in; the page says 已拒绝
// at once and is not signed in.  重新扫码 gives a new QR; the cancelled one
// cannot be approved afterwards; the new one can.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { USERS, Phone, launch, checkPage, shooter, signIn, scanScene, apiGet, withWechatBound } from "../lib.mjs";

const USER = "wdeny";
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("the phone denies a sign-in; retry with a new QR", async () => {
  const shot = shooter("wechat-deny");
  const phone = new Phone("o-wdeny-1");
  const { ctx, page } = await withWechatBound(browser, USER, phone);
  await page.click("#logout");
  await page.waitForSelector("#login-form");

  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor");
  const scene = await scanScene(page);
  await phone.answer(scene, "deny");
  await page.waitForSelector("[data-testid=scan-status][data-state=denied]");
  assert.match(await page.textContent("[data-testid=scan-status]"), /^已拒绝/);
  assert.equal((await page.textContent("[data-testid=scan-refresh]")).trim(), "重新扫码");
  assert.ok(await page.isVisible("#sf-dialog"), "still in the second step");
  assert.equal((await apiGet(page, "/api/me")).status, 401, "not signed in");
  await shot(page, "denied");

  // The denied scene stays denied.
  assert.notEqual((await phone.run("answer", scene, "trust")).status, 0);

  await page.click("[data-testid=scan-refresh]");
  const scene2 = await scanScene(page);
  assert.notEqual(scene2, scene);
  await shot(page, "new-qr");
  await phone.answer(scene2, "temporary");
  await page.waitForSelector("#page-2fa");
  assert.equal((await apiGet(page, "/api/me")).body.user, USER);
  checkPage(page);
  await ctx.close();
});
