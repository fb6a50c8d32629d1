// Sign in with the mini program's code (图 2-7-4, 2-7-5): the 验证码 tab,
// 当前验证方式：微信, the 6-digit code the phone shows for this mailbox.  A
// wrong code is refused with the tries left; the right one signs in.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { USERS, Phone, launch, checkPage, shooter, signIn, signOut, enterCode, withWechatBound } from "../lib.mjs";

const USER = "wcode";
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("sign in with the mini program's code", async () => {
  const shot = shooter("wechat-code");
  const phone = new Phone("o-wcode-1");
  const { ctx, page } = await withWechatBound(browser, USER, phone);
  await signOut(page);

  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor");
  await page.click("#sf-tab-code");
  assert.equal(await page.getAttribute("#sf-tab-code", "aria-selected"), "true");
  assert.equal((await page.textContent("#sf-method")).trim(), "当前验证方式：微信");
  assert.equal((await page.textContent("#sf-hint")).trim(), "打开【微信-邮箱安全助手】输入验证码");
  assert.ok(await page.isVisible("#sf-ok"));
  assert.ok(await page.isHidden("#sf-switch"), "one kind bound: nothing to switch to");
  await shot(page, "signin-code-tab");

  const code = await phone.codeFor(USER);
  assert.match(code, /^\d{6}$/);
  const wrong = String((parseInt(code, 10) + 500000) % 1000000).padStart(6, "0");
  await enterCode(page, wrong);
  await page.waitForSelector("#sf-error", { state: "visible" });
  assert.match(await page.textContent("#sf-error"), /^验证码错误/);
  await shot(page, "signin-code-wrong");

  await enterCode(page, code, { trust: false });
  await page.waitForSelector("#page-2fa");
  assert.ok(!(await ctx.cookies()).some((c) => c.name === "mfa_device"), "no trust asked: no device cookie");
  await shot(page, "signed-in");
  checkPage(page);
  await ctx.close();
});
