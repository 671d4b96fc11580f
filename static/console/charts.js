// Dashboard history: draws the per-organization charts (uPlot, vendored under static/vendor/)
// from the JSON the page carries (console.activity), and every data-refresh-seconds fetches the
// dashboard again to replace its status table, the history tables and the charts' data, without
// reloading the page. No refresh while the tab is hidden; one at once when it shows again.
// window.InterOrgCharts exposes the charts and their data (the browser tests read them).
(function () {
  "use strict";
  var section = document.getElementById("history");
  if (!section || typeof uPlot === "undefined") return;
  var holder = document.getElementById("history-charts");

  // One chart per group of series; colours distinguishable in grey too.
  var CHARTS = [
    { key: "entries", title: "Entries", series: [["exported", "#1f77b4"], ["imported", "#2ca02c"], ["updated", "#ff7f0e"], ["deleted", "#d62728"]] },
    { key: "messages", title: "Messages", series: [["sent", "#1f77b4"], ["received", "#9467bd"]] },
    { key: "duration", title: "Cycle duration (s)", series: [["duration", "#17becf"]] },
    { key: "lag", title: "Lag (master USNs)", series: [["lag", "#8c564b"]] },
    { key: "trouble", title: "Failures, repairs, held", series: [["failed", "#d62728"], ["repairs", "#ff7f0e"], ["held", "#7f7f7f"]] },
  ];

  var state = { data: null, charts: {}, refreshes: 0, timer: null, lastRefresh: Date.now() };
  window.InterOrgCharts = state;

  function readData(doc) {
    var node = doc.getElementById("history-data");
    return node ? JSON.parse(node.textContent) : null;
  }

  function columns(data, org, chart) {
    var cols = [data.t];
    chart.series.forEach(function (s) { cols.push(org.series[s[0]]); });
    return cols;
  }

  function options(data, chart, width) {
    var labels = data.series_labels;
    var series = [{}];
    chart.series.forEach(function (s) {
      series.push({
        label: labels[s[0]] || s[0],
        stroke: s[1],
        width: 2,
        spanGaps: false,
        points: { show: true, size: 5 },
      });
    });
    return {
      width: width,
      height: 160,
      title: chart.title,
      series: series,
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max || 0)]; } } },
      axes: [{ space: 60 }, { size: 40 }],
    };
  }

  function chartWidth() {
    var width = holder.clientWidth || 900;
    var perRow = width >= 1100 ? 3 : width >= 700 ? 2 : 1;
    return Math.floor(width / perRow) - 16;
  }

  function draw(data) {
    holder.textContent = "";
    Object.keys(state.charts).forEach(function (name) {
      Object.keys(state.charts[name]).forEach(function (key) { state.charts[name][key].destroy(); });
    });
    state.charts = {};
    var width = chartWidth();
    data.organizations.forEach(function (org) {
      var block = document.createElement("div");
      block.className = "history-org";
      block.setAttribute("data-org", org.name);
      var heading = document.createElement("h3");
      heading.textContent = org.name + " — " + org.display_name;
      block.appendChild(heading);
      var grid = document.createElement("div");
      grid.className = "history-grid";
      block.appendChild(grid);
      holder.appendChild(block);
      state.charts[org.name] = {};
      CHARTS.forEach(function (chart) {
        var cell = document.createElement("div");
        cell.className = "history-chart";
        cell.setAttribute("data-chart", chart.key);
        grid.appendChild(cell);
        state.charts[org.name][chart.key] = new uPlot(options(data, chart, width), columns(data, org, chart), cell);
      });
    });
    state.data = data;
  }

  function sameShape(a, b) {
    if (!a || !b || a.window !== b.window || a.organizations.length !== b.organizations.length) return false;
    return a.organizations.every(function (org, n) { return org.name === b.organizations[n].name; });
  }

  function update(data) {
    if (!sameShape(state.data, data)) { draw(data); return; }
    data.organizations.forEach(function (org) {
      CHARTS.forEach(function (chart) { state.charts[org.name][chart.key].setData(columns(data, org, chart)); });
    });
    state.data = data;
  }

  // Replace a part of the page by the same part of the freshly fetched one, keeping which
  // tables a reader opened.
  function replace(doc, selector) {
    var old = document.querySelector(selector);
    var fresh = doc.querySelector(selector);
    if (!old || !fresh) return;
    var open = Array.prototype.map.call(old.querySelectorAll("details"), function (d) { return d.open; });
    old.replaceWith(fresh);
    Array.prototype.forEach.call(fresh.querySelectorAll("details"), function (d, n) { if (open[n]) d.open = true; });
  }

  function refresh() {
    state.lastRefresh = Date.now();
    return fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var data = readData(doc);
        if (!data) return;
        replace(doc, "table.dashboard");
        replace(doc, "#history-tables");
        replace(doc, "#history-updated");
        update(data);
        state.refreshes += 1;
      })
      .catch(function () { /* keep what is shown; the next round tries again */ });
  }

  var seconds = parseInt(section.getAttribute("data-refresh-seconds"), 10) || 45;
  function schedule() {
    state.timer = window.setTimeout(function () {
      if (document.hidden) { schedule(); return; }
      refresh().then(schedule);
    }, seconds * 1000);
  }
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && Date.now() - state.lastRefresh >= seconds * 1000) refresh();
  });
  var resizing = null;
  window.addEventListener("resize", function () {
    window.clearTimeout(resizing);
    resizing = window.setTimeout(function () {
      var width = chartWidth();
      Object.keys(state.charts).forEach(function (name) {
        Object.keys(state.charts[name]).forEach(function (key) {
          state.charts[name][key].setSize({ width: width, height: 160 });
        });
      });
    }, 200);
  });
  state.refresh = refresh;

  var initial = readData(document);
  if (initial) draw(initial);
  schedule();
})();
