// Backup e-mail.  The API does not send e-mail codes yet (501
// not_implemented on /api/factors/email/begin): the page must say so in
// words instead of failing silently.  When the server grows the feature,
// this test fails on purpose so that it gets the full flow.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { USERS, launch, newContext, newPage, checkPage, shooter, open, signIn } from "../lib.mjs";

const USER = "eli";
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("bind backup e-mail: an unavailable feature is shown clearly", async () => {
  const shot = shooter("email-bind");
  const ctx = await newContext(browser);
  const page = await newPage(ctx);
  await open(page);
  assert.equal(await signIn(page, USER, USERS[USER]), "ok");
  await page.click("#bind-email");
  await page.waitForSelector("#email-dialog");
  assert.ok(await page.isDisabled("#email-code"), "no code field before a code is sent");
  await page.click("#email-send");
  assert.equal((await page.textContent("#email-error")).trim(), "请输入备用邮箱地址");
  await page.fill("#email-address", "eli.backup@example.com");
  await shot(page, "address");
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/api/factors/email/begin")),
    page.click("#email-send"),
  ]);
  assert.equal(resp.status(), 501, "e-mail codes are implemented now: extend this test to the full flow");
  await page.waitForSelector("#email-error", { state: "visible" });
  assert.equal((await page.textContent("#email-error")).trim(), "此功能暂未开放，请联系管理员");
  assert.ok(await page.isDisabled("#email-ok"));
  await shot(page, "not-available");
  await page.click("#email-cancel");
  await page.waitForSelector("#email-dialog", { state: "detached" });
  assert.equal(await page.getAttribute("#factor-email", "data-bound"), "0");
  checkPage(page);
  await ctx.close();
});
