// Push instead of a scan (issue 5: message/subscribe/send with number
// matching): 发送到我的微信 sends the request to the bound WeChat account
// (the stand-in records the subscribe message and the page it opens) and
// shows a two-digit number; the phone offers three and must pick that one.
// A wrong pick denies the request; the right one signs in.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { USERS, Phone, launch, newContext, newPage, checkPage, shooter, open, signIn, signOut, bindWechat, scanScene, standin } from "../lib.mjs";

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

test("send to my WeChat: number matching", async () => {
  const shot = shooter("wechat-push");
  const phone = new Phone(OPENID);
  const ctx = await newContext(browser);
  const page = await newPage(ctx);
  await open(page);
  assert.equal(await signIn(page, USER, USERS[USER]), "ok");
  await bindWechat(page, phone);
  await signOut(page);

  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor");
  await scanScene(page);
  let p = await push(page);
  await shot(page, "pushed-number");
  // WeChat got a subscribe message for this account, opening the confirm page.
  const msgs = (await standin("/_standin/messages", null)).messages;
  const msg = msgs.find((m) => m.touser === OPENID && String(m.page).includes(p.scene));
  assert.ok(msg, "a subscribe message to the bound account names the scene");
  assert.match(msg.page, /^pages\/confirm\/confirm\?scene=/);

  // The phone offers three numbers, the page's among them; a wrong pick denies.
  let req = await phone.mp("GET", "/api/mp/requests/" + p.scene);
  assert.equal(req.status, 200);
  assert.equal(req.body.numbers.length, 3);
  assert.ok(req.body.numbers.includes(p.number));
  const wrong = req.body.numbers.find((n) => n !== p.number);
  await phone.mp("POST", "/api/mp/requests/" + p.scene, { answer: "temporary", number: wrong });
  await page.waitForSelector("[data-testid=scan-status][data-state=denied]");
  assert.match(await page.textContent("[data-testid=scan-status]"), /^已拒绝/);
  await shot(page, "wrong-number-denied");

  // 重新扫码 goes back to the QR; push again and pick the right number.
  await page.click("[data-testid=scan-refresh]");
  await scanScene(page);
  p = await push(page);
  req = await phone.mp("GET", "/api/mp/requests/" + p.scene);
  assert.ok(req.body.numbers.includes(p.number));
  const ans = await phone.mp("POST", "/api/mp/requests/" + p.scene, { answer: "temporary", number: p.number });
  assert.equal(ans.status, 200);
  await page.waitForSelector("#page-2fa");
  checkPage(page);
  await ctx.close();
});
