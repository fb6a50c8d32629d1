// A temporary sign-in (no trust): the next sign-in asks again.  Then change
// and unbind the authenticator app, each after a fresh verification with the
// current factor (图 3-5-1/2, 3-6-1/2); unbinding the last factor turns the
// second step off.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { USERS, TotpClock, launch, newContext, newPage, checkPage, shooter, open, signIn, signOut, bindTotp, enterCode } from "../lib.mjs";

const USER = "tess";
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("temporary sign-in asks again; change and unbind after a fresh verification", async () => {
  const shot = shooter("otp-temp-unbind");
  const ctx = await newContext(browser);
  const page = await newPage(ctx);
  await open(page);
  assert.equal(await signIn(page, USER, USERS[USER]), "ok");
  let clock = await bindTotp(page);
  await signOut(page);

  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor");
  await enterCode(page, await clock.next(), { trust: false });
  await page.waitForSelector("#page-2fa");
  assert.ok(!(await ctx.cookies()).some((c) => c.name === "mfa_device"), "no device cookie without trust");
  await shot(page, "temporary-signin");
  await signOut(page);

  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor", "not trusted: asked again");
  await shot(page, "asked-again");
  await enterCode(page, await clock.next());
  await page.waitForSelector("#page-2fa");

  // Change: verify with the current app, then bind a new key.
  await page.click("#change-totp");
  await page.waitForSelector("#sf-dialog");
  assert.equal((await page.textContent("#sf-dialog-title")).trim(), "修改验证");
  assert.ok(await page.isHidden("#sf-trust").catch(() => true));
  await shot(page, "change-verify");
  await enterCode(page, await clock.next());
  await page.waitForSelector("#otp-dialog");
  const oldSecret = clock.secret;
  const secret = (await page.textContent("#otp-secret")).replace(/\s+/g, "");
  assert.notEqual(secret, oldSecret);
  clock = new TotpClock(secret);
  await shot(page, "change-new-key");
  await page.fill("#otp-code", await clock.next());
  await page.click("#otp-ok");
  await page.waitForSelector("#otp-dialog", { state: "detached" });
  await page.waitForSelector("#factor-totp[data-bound='1']");

  // Unbind: a fresh verification first; a wrong code is refused.
  await page.click("#unbind-totp");
  await page.waitForSelector("#sf-dialog");
  assert.equal((await page.textContent("#sf-dialog-title")).trim(), "解绑验证");
  await enterCode(page, clock.wrong());
  await page.waitForSelector("#sf-error", { state: "visible" });
  assert.match(await page.textContent("#sf-error"), /^验证码错误/);
  await shot(page, "unbind-verify-wrong-code");
  await enterCode(page, await clock.next());
  await page.waitForSelector("#factor-totp[data-bound='0']");
  assert.ok((await page.textContent("#toast")).includes("已解绑"));
  await shot(page, "unbound");
  await signOut(page);

  assert.equal(await signIn(page, USER, USERS[USER]), "ok", "no factor: password only");
  checkPage(page);
  await ctx.close();
});
