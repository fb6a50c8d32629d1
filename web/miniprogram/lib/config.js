// config.js - where the mini program finds mfagate.
//
// baseUrl is the https origin of the mfagate web endpoint (no trailing
// slash).  It must also be listed as a "request 合法域名" in the mini
// program's settings on mp.weixin.qq.com; WeChat refuses other hosts.
// Replace the placeholder per deployment.  Tests overwrite it at run time.
"use strict";
module.exports = {
  baseUrl: "https://mail.example.com",
  requestTimeoutMs: 10000
};
