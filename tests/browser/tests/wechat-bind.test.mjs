// Bind WeChat (图 2-6-1 → 2-6-4): 微信 → 绑定 shows a QR code; the phone
// (tests/phone_sim.py, as the mini program) scans it and sees a bind
// request for this mailbox.  A first answer "cancel" leaves the page saying
// 已拒绝 with a new QR on request; "confirm" on the new one binds, and the
// page turns to 绑定成功 by itself (no reload).  The phone then lists the
// mailbox with its code secret.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { USERS, Phone, launch, newContext, newPage, checkPage, shooter, open, signIn, scanScene, apiGet } from "../lib.mjs";

const USER = "wbind";
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("bind WeChat by scanning; a cancelled scan can be retried", async () => {
  const shot = shooter("wechat-bind");
  const phone = new Phone("o-wbind-1");
  const ctx = await newContext(browser);
  const page = await newPage(ctx);
  await open(page);
  assert.equal(await signIn(page, USER, USERS[USER]), "ok");

  // The row: WeChat, not bound, 绑定 enabled.
  assert.equal(await page.getAttribute("#factor-wechat", "data-bound"), "0");
  assert.ok((await page.textContent("#factor-wechat")).includes("微信"));
  assert.ok(!(await page.isDisabled("#bind-wechat")));
  await shot(page, "settings");

  await page.click("#bind-wechat");
  await page.waitForSelector("#wx-bind-dialog");
  let scene = await scanScene(page);
  assert.equal((await page.textContent("#wx-bind-dialog-title")).trim(), "绑定微信");
  assert.equal((await page.textContent("#wx-bind-dialog .scan-hint")).trim(), "请打开【微信】扫码绑定");
  assert.ok((await page.textContent("#wx-bind-dialog")).includes("请使用微信扫描二维码"));
  await shot(page, "bind-qr");

  // The phone sees who asks: a bind of this mailbox.
  const req = await phone.show(scene);
  assert.equal(req.kind, "bind");
  assert.equal(req.mailbox, USER);
  assert.ok(req.addr, "the request names the browser's address");

  // Cancel on the phone: the page says so at once and offers a new QR.
  await phone.answer(scene, "deny");
  await page.waitForSelector("[data-testid=scan-status][data-state=denied]");
  assert.match(await page.textContent("[data-testid=scan-status]"), /^已拒绝/);
  assert.equal(await page.getAttribute("#factor-wechat", "data-bound"), "0");
  await shot(page, "bind-denied");
  // A decided scene is not answered twice.
  assert.notEqual((await phone.run("answer", scene, "confirm")).status, 0);

  await page.click("[data-testid=scan-refresh]");
  const scene2 = await scanScene(page);
  assert.notEqual(scene2, scene);
  scene = scene2;
  await phone.answer(scene, "confirm");

  // No reload: the dialog closes itself, 绑定成功, the row shows WeChat bound.
  await page.waitForSelector("#wx-bind-dialog", { state: "detached" });
  await page.waitForSelector("#factor-wechat[data-bound='1']");
  assert.ok((await page.textContent("#toast")).includes("绑定成功"));
  assert.equal((await page.textContent("#change-wechat")).trim(), "修改");
  assert.equal((await page.textContent("#unbind-wechat")).trim(), "解绑");
  await shot(page, "bound");
  const me = await apiGet(page, "/api/me");
  assert.ok(me.body.factors.some((f) => f.kind === "wechat"));

  // The mini program now lists the mailbox with a 6-digit code secret.
  const accts = await phone.accounts();
  const mine = accts.find((a) => a.mailbox === USER);
  assert.ok(mine, "the phone lists the mailbox");
  assert.match(mine.secret, /^[A-Z2-7]+=*$/);
  assert.match(await phone.codeFor(USER), /^\d{6}$/);

  // Binding twice is not offered: 修改 / 解绑 only.
  assert.equal(await page.$("#bind-wechat"), null);
  checkPage(page);
  await ctx.close();
});
