// Schedule page: while a run is running, waiting for the master's reply or retrying after a
// database error, ask the API for its state every two seconds and reload the page once it changed.
(function () {
  "use strict";
  var table = document.getElementById("runs");
  if (!table) return;
  var api = table.getAttribute("data-api");
  var pending = table.querySelectorAll(
    'tr[data-status="running"], tr[data-status="waiting"], tr[data-status="retrying"]'
  );
  var tries = 0;
  function poll() {
    tries += 1;
    if (tries > 150) return;
    var checks = Array.prototype.map.call(pending, function (row) {
      var id = encodeURIComponent(row.getAttribute("data-run"));
      return fetch(api + id + "/", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (run) { return run && run.status !== row.getAttribute("data-status"); });
    });
    Promise.all(checks).then(function (changed) {
      if (changed.some(Boolean)) { window.location.reload(); } else { window.setTimeout(poll, 2000); }
    }).catch(function () { window.setTimeout(poll, 5000); });
  }
  if (pending.length) window.setTimeout(poll, 2000);
})();
