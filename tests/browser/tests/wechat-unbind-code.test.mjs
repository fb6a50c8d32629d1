// Unbind WeChat with the mini program's code (图 3-5-2 right, 3-5-4/5): the
// 验证码 tab of the verification, the phone's 6-digit code, then unbound.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Phone, launch, checkPage, shooter, enterCode, withWechatBound } from "../lib.mjs";

const USER = "wuncode";
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("unbind WeChat after a verification by code", async () => {
  const shot = shooter("wechat-unbind-code");
  const phone = new Phone("o-wuncode-1");
  const { ctx, page } = await withWechatBound(browser, USER, phone);

  await page.click("#unbind-wechat");
  await page.waitForSelector("#sf-dialog");
  assert.equal((await page.textContent("#sf-dialog-title")).trim(), "解绑验证");
  await page.click("#sf-tab-code");
  assert.equal((await page.textContent("#sf-method")).trim(), "当前验证方式：微信");
  assert.ok((await page.textContent("#sf-panel-code")).includes("看不到验证码？请选择 扫描二维码"));
  await shot(page, "unbind-verify-code");
  await enterCode(page, await phone.codeFor(USER));
  await page.waitForSelector("#sf-dialog", { state: "detached" });
  await page.waitForSelector("#factor-wechat[data-bound='0']");
  assert.ok((await page.textContent("#toast")).includes("已解绑"));
  await shot(page, "unbound");
  assert.ok(!(await phone.accounts()).some((a) => a.mailbox === USER));
  checkPage(page);
  await ctx.close();
});
