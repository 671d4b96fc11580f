// Loaded on every console page (base.html), apart from console.js, which only some pages load.

// ---- Menu toggle: under ~900 px the navigation folds behind a button. ----
(function () {
  "use strict";
  var button = document.getElementById("menu-toggle");
  if (!button) return;
  button.addEventListener("click", function () {
    var open = document.body.classList.toggle("nav-open");
    button.setAttribute("aria-expanded", open ? "true" : "false");
  });
})();

// ---- Time zone: tell the server the browser's zone (a cookie the server reads). ----
// Used while the user has saved no zone of their own (Time zone page). The page is drawn once
// more when the zone was not known yet, so that its times are in the right zone at once.
(function () {
  "use strict";
  var source = document.body.getAttribute("data-tz-source");
  if (!source || !window.Intl) return;
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!zone || !/^[A-Za-z0-9_+\/-]+$/.test(zone)) return;  // IANA names need no escaping
  var cookie = "interorg_tz=";
  var current = document.cookie.split("; ").filter(function (c) { return c.indexOf(cookie) === 0; })[0];
  if (current && current.slice(cookie.length) === zone) return;
  document.cookie = cookie + zone + "; path=/; max-age=31536000; SameSite=Lax";
  var shown = document.getElementById("tz-name");  // a page with times on it (logged in)
  if (shown && source === "server" && !sessionStorage.getItem("interorg-tz-reloaded")) {
    sessionStorage.setItem("interorg-tz-reloaded", "1");
    window.location.reload();
  }
})();

// ---- Wide tables scroll sideways inside a wrapper instead of squeezing their cells. ----
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("table.grid"), function (table) {
    if (table.parentNode.classList && table.parentNode.classList.contains("table-wrap")) return;
    var wrap = document.createElement("div");
    wrap.className = "table-wrap";
    table.parentNode.insertBefore(wrap, table);
    wrap.appendChild(table);
  });
})();
