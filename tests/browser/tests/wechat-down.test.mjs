// WeChat's servers unreachable (its own mfagate and stand-in, so the other
// files are not disturbed: MFA_WXDOWN_URL, MFA_WXDOWN_STANDIN).  Binding
// says so clearly and binds nothing; at sign-in the 扫码授权 tab says so and
// points to the other methods, and the authenticator app (OTP) still signs
// in.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { USERS, Phone, launch, newContext, newPage, checkPage, shooter, open, signIn, signOut, bindTotp, bindWechat, enterCode, apiGet, wechatDown } from "../lib.mjs";

const USER = "wdown";
const BASE = process.env.MFA_WXDOWN_URL;
const STANDIN = process.env.MFA_WXDOWN_STANDIN;
let browser;
before(async () => { browser = await launch(); });
after(async () => {
  if (STANDIN) await wechatDown(false, STANDIN).catch(() => {});
  await browser?.close();
});

test("WeChat API down: told clearly, nothing half-bound, OTP still signs in", { skip: !BASE && "run.py did not start the WeChat-down server" }, async () => {
  const shot = shooter("wechat-down");
  const phone = new Phone("o-wdown-1", { base: BASE, standinBase: STANDIN });
  const ctx = await newContext(browser);
  const page = await newPage(ctx);
  await open(page, "#/login", BASE);
  assert.equal(await signIn(page, USER, USERS[USER]), "ok");
  const clock = await bindTotp(page);

  // Bind while WeChat is down: a clear message, nothing bound.
  await wechatDown(true, STANDIN);
  await page.click("#bind-wechat");
  await page.waitForSelector("#wx-bind-dialog");
  await page.waitForSelector("#wx-bind-dialog [data-testid=scan-error]", { state: "visible" });
  assert.equal((await page.textContent("[data-testid=scan-error]")).trim(), "暂时无法连接微信服务器，请使用其它验证方式，或稍后再试");
  assert.equal(await page.$("#wx-bind-dialog [data-testid=scan-qr]"), null, "no QR");
  await shot(page, "bind-wechat-down");
  await page.click("#wx-bind-cancel");
  await page.waitForSelector("#wx-bind-dialog", { state: "detached" });
  assert.equal(await page.getAttribute("#factor-wechat", "data-bound"), "0");
  assert.ok(!(await apiGet(page, "/api/me")).body.factors.some((f) => f.kind === "wechat"), "nothing half-bound");

  // WeChat back: bind it.
  await wechatDown(false, STANDIN);
  await bindWechat(page, phone);
  await signOut(page);

  // Down again at sign-in: the scan tab says so; OTP signs in.
  await wechatDown(true, STANDIN);
  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor");
  await page.waitForSelector("#sf-panel-scan [data-testid=scan-error]", { state: "visible" });
  assert.equal((await page.textContent("#sf-panel-scan [data-testid=scan-error]")).trim(), "暂时无法连接微信服务器，请使用其它验证方式，或稍后再试");
  assert.ok(await page.isVisible("#sf-scan-down"), "it names the other ways in");
  assert.ok(await page.isVisible("#sf-scan-usecode"));
  await shot(page, "signin-wechat-down");

  await page.click("#sf-scan-usecode");
  assert.equal(await page.getAttribute("#sf-tab-code", "aria-selected"), "true");
  assert.equal((await page.textContent("#sf-method")).trim(), "当前验证方式：微信");
  await page.click("#sf-switch");
  assert.equal((await page.textContent("#sf-method")).trim(), "当前验证方式：第三方 OTP");
  await shot(page, "signin-otp-instead");
  await enterCode(page, await clock.next());
  await page.waitForSelector("#page-2fa");
  assert.equal((await apiGet(page, "/api/me")).body.user, USER);
  await wechatDown(false, STANDIN);
  checkPage(page);
  await ctx.close();
});
