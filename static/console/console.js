// Runs still to finish are followed by asking for their state every two seconds, until they end:
// - the Schedule page asks the API for each queued, running, waiting or retrying run and reloads
//   the page once one changed;
// - a run's page asks its small JSON status (console/views/follow.py) and updates its fields in
//   place, without a reload, until the run ends.
(function () {
  "use strict";
  var INTERVAL = 2000, AFTER_ERROR = 5000, MAX_TRIES = 900;

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; });
  }

  // Schedule page: reload once a pending run changed.
  var table = document.getElementById("runs");
  if (table) {
    var api = table.getAttribute("data-api");
    var pending = table.querySelectorAll(
      'tr[data-status="queued"], tr[data-status="running"], tr[data-status="waiting"], tr[data-status="retrying"]'
    );
    var tries = 0;
    var poll = function () {
      tries += 1;
      if (tries > 150) return;
      var checks = Array.prototype.map.call(pending, function (row) {
        var id = encodeURIComponent(row.getAttribute("data-run"));
        return getJSON(api + id + "/").then(function (run) {
          return run && run.status !== row.getAttribute("data-status");
        });
      });
      Promise.all(checks).then(function (changed) {
        if (changed.some(Boolean)) { window.location.reload(); } else { window.setTimeout(poll, INTERVAL); }
      }).catch(function () { window.setTimeout(poll, AFTER_ERROR); });
    };
    if (pending.length) window.setTimeout(poll, INTERVAL);
  }

  // A run's page: follow the run in place until it ends.
  var live = document.getElementById("run-live");
  if (live) {
    var url = live.getAttribute("data-status-url");
    var progress = document.getElementById("run-progress");
    var count = 0;
    var slug = function (text) {  // as Django's slugify, for the state badge's class
      return text.toLowerCase().replace(/[^\w\s-]/g, "").trim().replace(/[-\s]+/g, "-");
    };
    var show = function (run) {
      live.setAttribute("data-status", run.status);
      var badge = live.querySelector('[data-run-field="status_display"] .state');
      if (badge) {
        badge.textContent = run.status_display;
        badge.className = "state state-" + slug(run.status_display);
      }
      Array.prototype.forEach.call(document.querySelectorAll("[data-run-field]"), function (node) {
        var field = node.getAttribute("data-run-field");
        if (field === "status_display" || field === "progress") return;
        var value = field === "finished_at" ? run.finished_at_display : run[field];
        node.textContent = value === null || value === undefined ? (field === "reply_parts" ? "?" : "—") : String(value);
      });
      progress.textContent = run.progress;
      progress.hidden = false;
      document.getElementById("run-error").hidden = !run.error;
    };
    var follow = function () {
      count += 1;
      getJSON(url).then(function (run) {
        if (!run) { window.setTimeout(follow, AFTER_ERROR); return; }
        show(run);
        if (run.finished) {
          document.getElementById("run-ended").hidden = false;
        } else if (count < MAX_TRIES) {
          window.setTimeout(follow, INTERVAL);
        }
      }).catch(function () { window.setTimeout(follow, AFTER_ERROR); });
    };
    var status = live.getAttribute("data-status");
    if (["queued", "running", "waiting", "retrying"].indexOf(status) >= 0) follow();
  }
})();
