// Unbind WeChat by scan (图 3-5-1 → 3-5-3): 解绑 asks for a fresh
// verification; the 扫码授权 tab's QR reaches the phone as an unbind
// request, 确认 there unbinds, and the phone no longer lists the mailbox.
// With WeChat the only factor, the second step is then off.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { USERS, Phone, launch, checkPage, shooter, signIn, signOut, scanScene, withWechatBound } from "../lib.mjs";

const USER = "wunscan";
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("unbind WeChat after a verification by scan", async () => {
  const shot = shooter("wechat-unbind-scan");
  const phone = new Phone("o-wunscan-1");
  const { ctx, page } = await withWechatBound(browser, USER, phone);
  await shot(page, "bound");

  await page.click("#unbind-wechat");
  await page.waitForSelector("#sf-dialog");
  assert.equal((await page.textContent("#sf-dialog-title")).trim(), "解绑验证");
  assert.equal(await page.getAttribute("#sf-tab-scan", "aria-selected"), "true");
  assert.equal(await page.$("#sf-trust"), null, "no trust box outside sign-in");
  let scene = await scanScene(page);
  await shot(page, "unbind-verify-scan");
  assert.equal((await phone.show(scene)).kind, "unbind");

  // A cancel on the phone first: nothing is unbound.
  await phone.answer(scene, "deny");
  await page.waitForSelector("[data-testid=scan-status][data-state=denied]");
  await shot(page, "unbind-denied");
  await page.click("[data-testid=scan-refresh]");
  scene = await scanScene(page);
  await phone.answer(scene, "confirm");

  await page.waitForSelector("#sf-dialog", { state: "detached" });
  await page.waitForSelector("#factor-wechat[data-bound='0']");
  assert.ok((await page.textContent("#toast")).includes("已解绑"));
  await shot(page, "unbound");
  assert.ok(!(await phone.accounts()).some((a) => a.mailbox === USER), "the phone no longer lists the mailbox");

  // No factor left: the password alone signs in.
  await signOut(page);
  assert.equal(await signIn(page, USER, USERS[USER]), "ok");
  checkPage(page);
  await ctx.close();
});
