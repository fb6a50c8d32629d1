// Sign-in without a second factor (图 2-7-1), the pages a signed-in user
// sees, sign-out, a wrong password, and a backend that is down.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { BASE, DEAD, USERS, launch, newContext, newPage, checkPage, shooter, open, signIn, signOut, apiGet } from "../lib.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("sign in without a factor, see every page, sign out", async () => {
  const shot = shooter("signin-no-factor");
  const ctx = await newContext(browser);
  const page = await newPage(ctx);
  await open(page);
  assert.equal(await page.getAttribute("html", "lang"), "zh-CN");
  assert.equal((await page.textContent("#login-submit")).trim(), "登录");
  await shot(page, "login");

  // A wrong password: one text, and the form stays.
  assert.equal(await signIn(page, "una", "not-the-password"), "error");
  assert.equal((await page.textContent("#login-error")).trim(), "账号或密码错误");
  await shot(page, "login-wrong-password");

  assert.equal(await signIn(page, "una", USERS.una), "ok");
  assert.equal((await page.textContent("#me-user")).trim(), "una");
  assert.equal((await page.textContent("#page-2fa-title")).trim(), "账号安全二次验证");
  const intro = await page.textContent("#page-2fa .intro");
  for (const words of ["利用“账号安全二次验证”保护您的帐号", "请选择验证方式进行绑定", "绑定后，登录时会进行安全验证"])
    assert.ok(intro.includes(words), words);
  // One row per kind; nothing bound (run.py turns [wechat] on: 微信 is offered too).
  for (const kind of ["totp", "email", "wechat"]) {
    assert.equal(await page.getAttribute(`#factor-${kind}`, "data-bound"), "0");
    assert.equal((await page.textContent(`#bind-${kind}`)).trim(), "绑定");
  }
  assert.ok((await page.textContent("#factor-wechat")).includes("微信"));
  assert.ok((await page.textContent("#ts-footer")).includes("温馨提示：若已绑定二次验证，第三方客户端必须使用[专用密码]登录"));
  assert.equal((await page.textContent("#apppw-link")).trim(), "设置客户端专用密码");
  await shot(page, "two-step-settings");

  // The security headers the pages rely on.
  const resp = await page.request.get(BASE + "/");
  assert.match(resp.headers()["content-security-policy"], /script-src 'self'/);

  await page.click("#apppw-link");
  await page.waitForSelector("#ap-empty");
  assert.equal((await page.textContent("#ap-empty")).trim(), "（暂无）");
  const heads = await page.$$eval("#ap-table thead th", (ths) => ths.map((th) => th.textContent.trim()));
  assert.deepEqual(heads, ["密码名称", "使用时间", "创建时间", "操作"]);
  await shot(page, "app-passwords-empty");

  await page.click("#nav-devices");
  await page.waitForSelector("#dev-empty");
  await shot(page, "devices-empty");

  await page.click("#nav-signins");
  await page.waitForSelector("#si-table [data-testid=si-row]");
  const rows = await page.$$eval("#si-table [data-testid=si-row]", (trs) => trs.map((tr) => ({
    result: tr.dataset.result, proto: tr.dataset.proto, text: tr.textContent })));
  assert.ok(rows.some((r) => r.result === "ok" && r.proto === "web"), JSON.stringify(rows));
  assert.ok(rows.some((r) => r.result === "fail"), "the wrong password is listed: " + JSON.stringify(rows));
  await shot(page, "recent-signins");

  await signOut(page);
  assert.equal((await apiGet(page, "/api/me")).status, 401);
  // A signed-out browser asking for a page gets the sign-in form.
  await page.goto(BASE + "/#/app-passwords");
  await page.waitForSelector("#login-form");
  await shot(page, "signed-out");
  checkPage(page);
  await ctx.close();
});

test("backend unavailable: the sign-in form says so", { skip: !DEAD }, async () => {
  const shot = shooter("signin-backend-down");
  const ctx = await newContext(browser);
  const page = await newPage(ctx);
  await open(page, "#/login", DEAD);
  assert.equal(await signIn(page, "una", USERS.una), "error");
  assert.equal((await page.textContent("#login-error")).trim(), "邮件服务器暂时无法连接，请稍后再试");
  await shot(page, "backend-unavailable");
  checkPage(page);
  await ctx.close();
});
