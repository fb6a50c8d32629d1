// Recovery codes (web/API.md "Recovery codes"): on the 二次验证 page the 恢复码
// card is off until a factor is bound; generate → ten codes shown once with
// a copy button; sign in with one through "手机丢了？使用恢复码" on the
// second-factor step; the same code is refused the second time; another
// one works; the card counts what is left.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { USERS, launch, newContext, newPage, checkPage, shooter, open, signIn, signOut, bindTotp, enterCode } from "../lib.mjs";

const USER = "vic";
const RC = /^[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}$/;
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

// Signs in and answers the second step with a recovery code; resolves to
// the error line's text, or "" when signed in.
async function signInWithCode(page, code) {
  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor");
  await page.click("#sf-use-recovery");
  assert.equal((await page.textContent("#sf-method")).trim(), "当前验证方式：恢复码");
  assert.ok(await page.isHidden("#sf-use-recovery"), "the link goes once the method is chosen");
  await enterCode(page, code);
  const which = await Promise.race([
    page.waitForSelector("#page-2fa", { state: "visible" }).then(() => ""),
    page.waitForSelector("#sf-error", { state: "visible" }).then(async () => (await page.textContent("#sf-error")).trim()),
  ]);
  return which;
}

// The card's status line once it is loaded; with want (a RegExp), once it
// matches or after 5 s (the card reloads on its own after a change).
async function cardStatus(page, want) {
  await page.waitForSelector("#rc-status");
  await page.waitForFunction(() => !document.querySelector("#rc-status").textContent.includes("…"));
  if (want) {
    await page.waitForFunction((src) => new RegExp(src).test(document.querySelector("#rc-status").textContent.trim()),
      want.source, { timeout: 5000 }).catch(() => {});
  }
  return (await page.textContent("#rc-status")).trim();
}

test("generate recovery codes, sign in with one, refused the second time", async () => {
  const shot = shooter("recovery-codes");
  const ctx = await newContext(browser);
  const page = await newPage(ctx);
  await open(page);
  // Not a recovery-mode server: no "lost your phone?" link under the form.
  await page.waitForTimeout(300);
  assert.equal(await page.$("#login-lost"), null);
  assert.equal(await signIn(page, USER, USERS[USER]), "ok");

  // No factor: nothing to generate yet.
  assert.equal(await cardStatus(page), "尚未生成恢复码");
  assert.ok(await page.isDisabled("#rc-generate"));
  await shot(page, "card-no-factor");

  await bindTotp(page);
  await page.waitForSelector("#rc-generate:not([disabled])");
  await page.click("#rc-generate");
  await page.waitForSelector("#rc-dialog");
  const codes = await page.$$eval("[data-testid=rc-code]", (els) => els.map((e) => e.textContent.trim()));
  assert.equal(codes.length, 10);
  assert.equal(new Set(codes).size, 10);
  for (const c of codes) assert.match(c, RC);
  await page.click("#rc-copy");
  await page.waitForFunction(() => document.querySelector("#rc-copy").textContent !== "复制");
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.equal(copied, codes.join("\n"));
  await shot(page, "codes-shown-once");
  await page.click("#rc-done");
  await page.waitForSelector("#rc-dialog", { state: "detached" });
  assert.match(await cardStatus(page, /^剩余 10 \/ 10 个可用/), /^剩余 10 \/ 10 个可用/);
  assert.equal((await page.textContent("#rc-generate")).trim(), "重新生成恢复码");
  await shot(page, "card-ten-left");
  // Shown once: the page holds them nowhere after the dialog.
  assert.ok(!(await page.content()).includes(codes[0]));
  await signOut(page);

  // Sign in with a code, typed in capitals and without the dash.
  assert.equal(await signInWithCode(page, codes[0].replace("-", "").toUpperCase()), "");
  assert.match(await cardStatus(page, /^剩余 9 \/ 10 个可用/), /^剩余 9 \/ 10 个可用/);
  await shot(page, "signed-in-with-code");
  await signOut(page);

  // The same code again: refused, the try counted.
  assert.equal(await signInWithCode(page, codes[0]), "验证码错误，还可尝试 4 次");
  await shot(page, "used-code-refused");
  await enterCode(page, codes[1]);
  await page.waitForSelector("#page-2fa");
  assert.match(await cardStatus(page, /^剩余 8 \/ 10 个可用/), /^剩余 8 \/ 10 个可用/);

  // New codes void the old ones (asked first).
  await page.click("#rc-generate");
  await page.waitForSelector("#confirm-dialog");
  await shot(page, "regenerate-confirm");
  await page.click("#confirm-ok");
  await page.waitForSelector("#rc-dialog");
  const codes2 = await page.$$eval("[data-testid=rc-code]", (els) => els.map((e) => e.textContent.trim()));
  assert.equal(codes2.length, 10);
  assert.ok(!codes2.includes(codes[2]));
  await page.click("#rc-done");
  await signOut(page);
  assert.equal(await signInWithCode(page, codes[2]), "验证码错误，还可尝试 4 次");
  await enterCode(page, codes2[0]);
  await page.waitForSelector("#page-2fa");
  checkPage(page);
  await ctx.close();
});
