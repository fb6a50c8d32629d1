// clock.js - the one place the mini program reads the time, so that tests
// can pin it (clock.now = () => 59000).
"use strict";
module.exports = { now: function () { return Date.now(); } };
