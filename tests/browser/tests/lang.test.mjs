// zh-CN by default, English when the browser prefers it (Accept-Language /
// navigator.language), ?lang= overrides, and the visible zh/EN switch.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { BASE, USERS, launch, newContext, newPage, checkPage, shooter, open, signIn } from "../lib.mjs";

const USER = "lin";
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("English for an en-US browser", async () => {
  const shot = shooter("lang-en");
  const ctx = await newContext(browser, { locale: "en-US" });
  const page = await newPage(ctx);
  await open(page);
  assert.equal(await page.getAttribute("html", "lang"), "en");
  assert.equal((await page.textContent("#login-submit")).trim(), "Sign in");
  assert.equal((await page.textContent("label[for=login-user]")).trim(), "Account");
  assert.equal((await page.textContent("#lang-switch")).trim(), "中文");
  await shot(page, "login");
  assert.equal(await signIn(page, USER, USERS[USER]), "ok");
  assert.equal((await page.textContent("#page-2fa-title")).trim(), "Two-step verification");
  const text = await page.textContent("#page-2fa");
  for (const words of ["Protect your account with two-step verification", "Authenticator app (OTP)",
    "Backup e-mail", "WeChat", "Set up a client-specific password",
    "Note: with two-step verification on, mail apps must sign in with a client-specific password"])
    assert.ok(text.includes(words), words);
  await shot(page, "two-step-settings");
  await page.click("#nav-apppw");
  await page.waitForSelector("#ap-empty");
  const heads = await page.$$eval("#ap-table thead th", (ths) => ths.map((th) => th.textContent.trim()));
  assert.deepEqual(heads, ["Name", "Last used", "Created", "Actions"]);
  assert.equal((await page.textContent("#ap-empty")).trim(), "(none yet)");
  await page.click("#ap-generate");
  await page.waitForSelector("#ap-gen-dialog");
  await shot(page, "generate-dialog");
  await page.click("#ap-gen-cancel");

  // The switch: Chinese, and it sticks across a reload.
  await page.click("#lang-switch");
  assert.equal(await page.getAttribute("html", "lang"), "zh-CN");
  assert.equal((await page.textContent("#page-apppw-title")).trim(), "客户端专用密码");
  await page.reload();
  await page.waitForSelector("#page-apppw");
  assert.equal((await page.textContent("#ap-generate")).trim(), "生成专用密码");
  await shot(page, "switched-to-zh");
  checkPage(page);
  await ctx.close();
});

test("Chinese for a zh-CN browser, ?lang=en overrides", async () => {
  const shot = shooter("lang-zh");
  const ctx = await newContext(browser, { locale: "zh-CN" });
  const page = await newPage(ctx);
  await open(page);
  assert.equal(await page.getAttribute("html", "lang"), "zh-CN");
  assert.equal((await page.textContent("#page-login-title")).trim(), "登录邮箱");
  assert.equal((await page.textContent("#lang-switch")).trim(), "EN");
  await shot(page, "login");

  await page.goto(BASE + "/?lang=en#/login");
  await page.waitForSelector("body[data-ready='1']");
  assert.equal((await page.textContent("#login-submit")).trim(), "Sign in");
  await shot(page, "login-lang-en");

  await page.click("#lang-switch");
  assert.equal((await page.textContent("#login-submit")).trim(), "登录");
  checkPage(page);
  await ctx.close();
});

test("an English-first Accept-Language with Chinese second still gets English", async () => {
  const ctx = await newContext(browser, { locale: "en-GB" });
  await ctx.setExtraHTTPHeaders({ "Accept-Language": "en-GB,en;q=0.9,zh-CN;q=0.8" });
  const page = await newPage(ctx);
  await open(page);
  assert.equal((await page.textContent("#login-submit")).trim(), "Sign in");
  checkPage(page);
  await ctx.close();
});
