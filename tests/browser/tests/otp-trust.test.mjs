// Bind the authenticator app (图 2-6-1 → 2-6-4), sign in with a code and
// "trust this device" (图 2-7-2): the next sign-in from this browser skips
// the second factor; revoking the device on the trusted-devices page makes
// the next sign-in ask again.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { USERS, launch, newContext, newPage, checkPage, shooter, open, signIn, signOut, bindTotp, enterCode, apiGet } from "../lib.mjs";

const USER = "otto";
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("bind OTP, sign in with trust, next sign-in skips, revoke the device", async () => {
  const shot = shooter("otp-trust");
  const ctx = await newContext(browser);
  const page = await newPage(ctx);
  await open(page);
  assert.equal(await signIn(page, USER, USERS[USER]), "ok");

  const clock = await bindTotp(page, shot);
  assert.ok((await page.textContent("#toast")).includes("绑定成功"));
  assert.equal((await page.textContent("#change-totp")).trim(), "修改");
  assert.equal((await page.textContent("#unbind-totp")).trim(), "解绑");
  await shot(page, "otp-bound");
  await signOut(page);

  // The second factor: the code tab, no scan tab (WeChat is not bound).
  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor");
  assert.ok(await page.isHidden("#sf-tab-scan"));
  assert.ok(await page.isVisible("#sf-tab-code"));
  assert.equal(await page.getAttribute("#sf-code", "placeholder"), "请输入验证码");
  assert.equal((await page.textContent("label[for=sf-trust]")).trim(), "信任此设备（下次不再验证）");
  assert.ok(await page.isHidden("#sf-switch"), "one method bound: nothing to switch to");
  await shot(page, "second-factor-dialog");

  // A wrong code: the dialog stays and says how many tries are left.
  await enterCode(page, clock.wrong());
  await page.waitForSelector("#sf-error", { state: "visible" });
  assert.match(await page.textContent("#sf-error"), /^验证码错误，还可尝试 \d+ 次$/);
  await shot(page, "second-factor-wrong-code");

  await enterCode(page, await clock.next(), { trust: true });
  await page.waitForSelector("#page-2fa");
  const me = await apiGet(page, "/api/me");
  assert.equal(me.body.user, USER);
  const cookies = await ctx.cookies();
  assert.ok(cookies.some((c) => c.name === "mfa_device" && c.httpOnly && c.secure), "a device cookie was set");
  await signOut(page);

  // Trusted: password only.
  assert.equal(await signIn(page, USER, USERS[USER]), "ok");
  await shot(page, "trusted-signin-skips-factor");

  await page.click("#nav-devices");
  await page.waitForSelector("[data-testid=dev-row]");
  const rows = await page.$$("[data-testid=dev-row]");
  assert.equal(rows.length, 1);
  assert.equal(await rows[0].getAttribute("data-current"), "1");
  assert.ok((await rows[0].textContent()).includes("（当前设备）"));
  await shot(page, "trusted-devices");
  await page.click("[data-testid=dev-revoke]");
  await page.waitForSelector("#confirm-dialog");
  await shot(page, "revoke-confirm");
  await page.click("#confirm-ok");
  await page.waitForSelector("#dev-empty");
  await shot(page, "device-revoked");

  // The recent sign-ins list the second factor and the trusted device.
  await page.click("#nav-signins");
  await page.waitForSelector("[data-testid=si-row]");
  await shot(page, "recent-signins");

  await signOut(page);
  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor", "a revoked device is asked again");
  await shot(page, "revoked-asks-again");
  await page.click("#sf-cancel");
  await page.waitForSelector("#sf-dialog", { state: "detached" });
  assert.ok(await page.isVisible("#login-form"));
  checkPage(page);
  await ctx.close();

  // Another browser (no device cookie) is asked too.
  const ctx2 = await newContext(browser);
  const page2 = await newPage(ctx2);
  await open(page2);
  assert.equal(await signIn(page2, USER, USERS[USER]), "second_factor");
  checkPage(page2);
  await ctx2.close();
});
