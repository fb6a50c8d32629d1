// Change (rebind) WeChat to another WeChat account (图 3-6-1 → 3-6-7):
// 修改 asks for a fresh verification with the current account (by scan:
// 确认 on phone A), then runs the bind flow for the new account (phone B).
// Afterwards A no longer lists the mailbox and its answers are refused;
// B signs in.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { USERS, Phone, launch, newContext, newPage, checkPage, shooter, open, signIn, signOut, bindWechat, scanScene } from "../lib.mjs";

const USER = "wrebind";
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("rebind WeChat to a second account; the old one verifies nothing", async () => {
  const shot = shooter("wechat-rebind");
  const phoneA = new Phone("o-wrebind-A");
  const phoneB = new Phone("o-wrebind-B");
  const ctx = await newContext(browser);
  const page = await newPage(ctx);
  await open(page);
  assert.equal(await signIn(page, USER, USERS[USER]), "ok");
  await bindWechat(page, phoneA);
  assert.ok((await phoneA.accounts()).some((a) => a.mailbox === USER));

  // 修改: verify with the current account first (图 3-6-2 left).
  await page.click("#change-wechat");
  await page.waitForSelector("#sf-dialog");
  assert.equal((await page.textContent("#sf-dialog-title")).trim(), "修改验证");
  let scene = await scanScene(page);
  await shot(page, "change-verify-scan");
  // The new account cannot answer for the old one.
  const wrong = await phoneB.run("answer", scene, "confirm");
  assert.notEqual(wrong.status, 0, "another WeChat account is refused");
  assert.match(wrong.stderr, /wrong_account/);
  assert.equal((await phoneA.show(scene)).kind, "change");
  await phoneA.answer(scene, "confirm");

  // Then the bind flow for the new account (图 3-6-6).
  await page.waitForSelector("#wx-bind-dialog");
  scene = await scanScene(page);
  await shot(page, "change-bind-qr");
  const req = await phoneB.show(scene);
  assert.equal(req.mailbox, USER);
  await phoneB.answer(scene, "confirm");
  await page.waitForSelector("#wx-bind-dialog", { state: "detached" });
  await page.waitForSelector("#factor-wechat[data-bound='1']");
  assert.ok((await page.textContent("#toast")).includes("绑定成功"));
  await shot(page, "rebound");

  // A lists it no more; B does.
  assert.ok(!(await phoneA.accounts()).some((a) => a.mailbox === USER), "the old account no longer lists the mailbox");
  assert.ok((await phoneB.accounts()).some((a) => a.mailbox === USER), "the new account lists it");

  // Sign-in: A's answers are refused; B's sign in.
  await signOut(page);
  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor");
  scene = await scanScene(page);
  const show = await phoneA.run("show", scene);
  assert.notEqual(show.status, 0);
  assert.match(show.stderr, /wrong_account/);
  const ans = await phoneA.run("answer", scene, "trust");
  assert.notEqual(ans.status, 0, "the old account's answer is refused");
  await shot(page, "old-account-refused");
  assert.equal(await page.getAttribute("[data-testid=scan-status]", "data-state"), "pending", "still waiting");
  await phoneB.answer(scene, "temporary");
  await page.waitForSelector("#page-2fa");
  checkPage(page);
  await ctx.close();
});
