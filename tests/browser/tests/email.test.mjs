// Backup e-mail, the real flow: bind an address with a code sent by mail
// (run.py gives mfagate the harness's SMTP sink as its [mail] relay and
// hands its folder over as MFA_MAIL_DIR; the code is read from the stored
// message), then sign in with a code by e-mail, then unbind after a fresh
// verification by e-mail.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { USERS, launch, newContext, newPage, checkPage, shooter, open, signIn, signOut, enterCode } from "../lib.mjs";

const USER = "eli";
const ADDR = "eli.backup@example.com";
const MAIL_DIR = process.env.MFA_MAIL_DIR;
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

// The messages for ADDR, oldest first.
function mailsTo(addr) {
  if (!MAIL_DIR || !fs.existsSync(MAIL_DIR)) return [];
  return fs.readdirSync(MAIL_DIR).filter((f) => f.endsWith(".eml"))
    .sort((a, b) => parseInt(a, 10) - parseInt(b, 10))
    .map((f) => fs.readFileSync(path.join(MAIL_DIR, f), "utf8"))
    .filter((m) => m.includes("X-Sink-Rcpt-To: <" + addr + ">"));
}

// Waits for message number n (1-based) to addr; returns its code.
async function codeFrom(n, addr = ADDR) {
  for (let i = 0; i < 200; i++) {
    const msgs = mailsTo(addr);
    if (msgs.length >= n) {
      const m = /Your verification code is (\d{6}) \(valid \d+ minutes\)/.exec(msgs[n - 1]);
      assert.ok(m, "the message holds the code");
      assert.match(msgs[n - 1], /您的验证码是 \d{6}/);
      return m[1];
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("no message " + n + " to " + addr + " in " + MAIL_DIR);
}

function wrong(code) {
  return String((parseInt(code, 10) + 1) % 1000000).padStart(6, "0");
}

test("bind a backup e-mail, sign in with a code by e-mail, unbind", async () => {
  assert.ok(MAIL_DIR, "run.py sets MFA_MAIL_DIR");
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
  await page.fill("#email-address", ADDR);
  await shot(page, "address");
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/api/factors/email/begin")),
    page.click("#email-send"),
  ]);
  assert.equal(resp.status(), 200);
  await page.waitForSelector("#email-sent", { state: "visible" });
  assert.equal((await page.textContent("#email-sent")).trim(), "验证码已发送至 e***@example.com");
  assert.ok(!(await page.isDisabled("#email-code")));
  let code = await codeFrom(1);
  await shot(page, "code-sent");

  // A wrong code first: refused with the tries left.
  await page.fill("#email-code", wrong(code));
  await page.click("#email-ok");
  await page.waitForSelector("#email-error", { state: "visible" });
  assert.match(await page.textContent("#email-error"), /^验证码错误/);
  await page.fill("#email-code", code);
  await page.click("#email-ok");
  await page.waitForSelector("#email-dialog", { state: "detached" });
  await page.waitForSelector("#factor-email[data-bound='1']");
  assert.match(await page.textContent("#factor-email"), /e\*\*\*@example\.com/);
  assert.ok(!(await page.textContent("#factor-email")).includes("eli.backup"), "the address is masked");
  await shot(page, "bound");
  await signOut(page);

  // Sign-in: the second step offers the backup e-mail; a code is sent on request.
  assert.equal(await signIn(page, USER, USERS[USER]), "second_factor");
  assert.equal((await page.textContent("#sf-method")).trim(), "当前验证方式：备用邮箱");
  await page.click("#sf-email-send");
  await page.waitForSelector("#sf-email-sent", { state: "visible" });
  assert.equal((await page.textContent("#sf-email-sent")).trim(), "验证码已发送至 e***@example.com");
  code = await codeFrom(2);
  await shot(page, "signin-code-sent");
  await enterCode(page, code, { trust: false });
  await page.waitForSelector("#page-2fa");
  assert.ok(!(await ctx.cookies()).some((c) => c.name === "mfa_device"), "no device cookie without trust");

  // Unbind after a fresh verification by e-mail.
  await page.click("#unbind-email");
  await page.waitForSelector("#sf-dialog");
  assert.equal((await page.textContent("#sf-dialog-title")).trim(), "解绑验证");
  await page.click("#sf-email-send");
  await page.waitForSelector("#sf-email-sent", { state: "visible" });
  code = await codeFrom(3);
  await enterCode(page, code);
  await page.waitForSelector("#factor-email[data-bound='0']");
  await shot(page, "unbound");
  checkPage(page);
  await ctx.close();
});
