// Client-specific passwords (图 4-1-1 → 4-1-2 → 4-1-3): generate one, copy
// it, use it for an IMAP login through the proxy, delete it (refused after),
// then clear all.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { USERS, PORTS, launch, newContext, newPage, checkPage, shooter, open, signIn, bindTotp, imapLogin } from "../lib.mjs";

const USER = "pam";
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function generate(page, name, shot) {
  await page.click("#ap-generate");
  await page.waitForSelector("#ap-gen-dialog");
  if (shot) {
    const notes = await page.textContent("#ap-gen-dialog .notes");
    for (const words of ["客户端专用密码是用于登录第三方邮件客户端", "请在客户端原密码框中输入专用密码进行登录",
      "适合客户端通过以下协议使用：POP、IMAP、SMTP", "“客户端专用密码”仅在生成时可见，支持设置多个"])
      assert.ok(notes.includes(words), words);
    assert.equal(await page.getAttribute("#ap-name", "placeholder"), "请输入密码名称");
  }
  await page.fill("#ap-name", name);
  if (shot) await shot(page, "generate-dialog");
  await page.click("#ap-gen-ok");
  await page.waitForSelector("#ap-result");
  const password = await page.getAttribute("#ap-password", "data-password");
  assert.match(password, /^[A-Za-z0-9]{4} [A-Za-z0-9]{4} [A-Za-z0-9]{4} [A-Za-z0-9]{4}$/);
  // What the user sees is the same four groups.
  assert.equal((await page.textContent("#ap-password")).trim(), password);
  return password;
}

async function closeResult(page) {
  await page.click("#ap-done");
  await page.waitForSelector("#ap-result", { state: "detached" });
}

test("generate, copy, use over IMAP, delete, clear all", async () => {
  const shot = shooter("app-passwords");
  const ctx = await newContext(browser);
  const page = await newPage(ctx);
  await open(page);
  assert.equal(await signIn(page, USER, USERS[USER]), "ok");
  await bindTotp(page);
  // With a factor bound, the account password no longer opens IMAP.
  assert.match(await imapLogin(USER, USERS[USER]), /^a1 NO /);

  await page.click("#apppw-link");
  await page.waitForSelector("#ap-empty");
  assert.ok(await page.isDisabled("#ap-clear"));
  await shot(page, "list-empty");

  const pw = await generate(page, "Foxmail", shot);
  assert.equal((await page.textContent("#ap-result-title")).trim(), "专用密码生成");
  assert.ok((await page.textContent("#ap-result .warn")).includes("切勿使用其它方式保存，以防泄露"));
  // The settings table: address and each protocol's host with both ports.
  const settings = await page.$$eval("#ap-settings tr", (trs) => trs.map((tr) => tr.textContent));
  assert.ok(settings[0].includes("邮件地址") && settings[0].includes(USER));
  assert.ok(settings[1].includes("收信服务器 (IMAP)") && settings[1].includes("127.0.0.1") &&
    settings[1].includes(`SSL 端口：${PORTS.imaps}，非 SSL 端口：${PORTS.imap}`), settings[1]);
  assert.ok(settings[2].includes("收信服务器 (POP3)") && settings[2].includes(`SSL 端口：${PORTS.pop3s}`), settings[2]);
  assert.ok(settings[3].includes("发信服务器 (SMTP)") && settings[3].includes(`SSL 端口：${PORTS.smtps}`), settings[3]);

  await page.click("#ap-copy");
  await page.waitForFunction(() => document.getElementById("ap-copy").textContent === "已复制");
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), pw);
  await shot(page, "result-dialog");
  await closeResult(page);

  await page.waitForSelector("[data-testid=ap-row][data-name=Foxmail]");
  await shot(page, "list-one");

  // The password opens IMAP through the proxy (as shown, with its spaces).
  assert.match(await imapLogin(USER, pw), /^a1 OK /);
  // The proxy records the use in a batch a moment later: reload until shown.
  let used = "";
  for (let i = 0; i < 40; i++) {
    await page.reload();
    await page.waitForSelector("[data-testid=ap-row][data-name=Foxmail]");
    used = await page.textContent("[data-testid=ap-row][data-name=Foxmail] td:nth-child(2)");
    if (used.includes("IMAP")) break;
    await page.waitForTimeout(250);
  }
  assert.match(used, /^\d{4}-\d\d-\d\d \d\d:\d\d · IMAP$/, "last used shows the IMAP login: " + used);
  await shot(page, "list-used");

  await page.click("[data-testid=ap-row][data-name=Foxmail] [data-testid=ap-delete]");
  await page.waitForSelector("#confirm-dialog");
  await shot(page, "delete-confirm");
  await page.click("#confirm-ok");
  await page.waitForSelector("#ap-empty");
  assert.match(await imapLogin(USER, pw), /^a1 NO /, "a deleted password is refused");

  const pw1 = await generate(page, "Outlook");
  await closeResult(page);
  await page.waitForSelector("[data-testid=ap-row][data-name=Outlook]");
  const pw2 = await generate(page, "Thunderbird");
  await closeResult(page);
  await page.waitForSelector("[data-testid=ap-row][data-name=Thunderbird]");
  assert.equal((await page.$$("[data-testid=ap-row]")).length, 2);
  await shot(page, "list-two");
  await page.click("#ap-clear");
  await page.waitForSelector("#confirm-dialog");
  await page.click("#confirm-ok");
  await page.waitForSelector("#ap-empty");
  await shot(page, "cleared");
  assert.match(await imapLogin(USER, pw1), /^a1 NO /);
  assert.match(await imapLogin(USER, pw2), /^a1 NO /);
  checkPage(page);
  await ctx.close();
});
