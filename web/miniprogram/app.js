// 邮箱安全助手 (Mail Security Assistant) - mfagate's WeChat mini program.
// See README.md in this folder.  The pages are thin; the logic is in lib/.
"use strict";
App({
  globalData: {}
});
