// Push instead of a scan (issue 5: message/subscribe/send with number
// matching): 发送到我的微信 sends the request to the bound WeChat account
// (the stand-in records the subscribe message and the page it opens) and
// shows a two-digit number; the phone (tests/phone_sim.py) finds the request
// in its inbox, is offered three numbers and must pick that one.  A wrong
// pick denies the request; the right one signs in.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { USERS, Phone, launch, checkPage, shooter, signIn, signOut, scanScene, withWechatBound } from "../lib.mjs";

const USER = "wpush";
const OPENID = "o-wpush-1";
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

// Pushes from the page; {scene, number} once the page waits on it.
async function push(page) {
  await page.click("#sf-push");
  await page.waitForSelector("#sf-push-box", { state: "visible" });
  const scene = (await scanScene(page, { qr: false }));
  const number = (await page.textContent("#sf-push-number")).trim();
  assert.match(number, /^\d{2}$/);
  return { scene, number: parseInt(number, 10) };
}

// The phone's side of a push: the message in its inbox names the scene; the
// request offers three numbers, the page's among them.
async function received(phone, p) {
  const msgs = await phone.inbox();
  const msg = msgs.find((m) => m.page === "pages/confirm/confirm?scene=" + p.scene);
  assert.ok(msg, "a subscribe message to the bound account names the scene: " + JSON.stringify(msgs));
  assert.equal(msg.touser, OPENID);
  const req = await phone.show(p.scene);
  assert.equal(req.kind, "signin");
  assert.equal(req.mailbox, USER);
  assert.equal(req.numbers.length, 3);
  assert.ok(req.numbers.includes(p.number), `${p.number} among ${req.numbers}`);
  return req;
}

test("send to my WeChat: number matching", async () => {
  const shot = shooter("wechat-push");
  const phone = new Phone(OPENID);
  const { ctx, page } = await withWechatBound(browser, USER, phone);
  await signOut(page);

  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor");
  await scanScene(page);
  let p = await push(page);
  await shot(page, "pushed-number");
  let req = await received(phone, p);
  // phone_sim's text output lists the numbers too
  assert.match(await phone.ok("show", p.scene), new RegExp(` numbers=${req.numbers.join(",")}\n$`));
  // without a number phone_sim sends nothing (it would be a wrong pick)
  const none = await phone.run("answer", p.scene, "temporary");
  assert.equal(none.status, 2, none.stderr);
  assert.match(none.stderr, /--number/);
  assert.equal(await page.getAttribute("#sf-scan-status", "data-state"), "pending");

  // a wrong pick denies
  const wrong = req.numbers.find((n) => n !== p.number);
  await phone.answer(p.scene, "temporary", { number: wrong });
  await page.waitForSelector("[data-testid=scan-status][data-state=denied]");
  assert.match(await page.textContent("[data-testid=scan-status]"), /^已拒绝/);
  await shot(page, "wrong-number-denied");

  // 重新扫码 goes back to the QR; push again and pick the right number.
  await page.click("[data-testid=scan-refresh]");
  await scanScene(page);
  p = await push(page);
  req = await received(phone, p);
  await phone.answer(p.scene, "temporary", { number: p.number });
  await page.waitForSelector("#page-2fa");
  checkPage(page);
  await ctx.close();
});
