// hookline console: the CSRF header on htmx requests, and the overview's charts.
// Served from /console/static (the CSP allows no inline script).
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  document.addEventListener("htmx:configRequest", function (e) {
    e.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  // A partial answered 401: the session ended, so sign in again.
  document.addEventListener("htmx:responseError", function (e) {
    if (e.detail.xhr && e.detail.xhr.status === 401) {
      window.location.assign("/console/login?next=" + encodeURIComponent(window.location.pathname));
    }
  });

  var charts = {};

  function series() {
    var el = document.getElementById("series");
    return el ? JSON.parse(el.textContent) : null;
  }

  function draw(id, label, color, xs, ys) {
    var el = document.getElementById(id);
    if (!el || typeof uPlot === "undefined") return;
    var data = [xs, ys];
    if (charts[id]) {
      charts[id].setData(data);
      return;
    }
    var opts = {
      width: Math.max(el.clientWidth, 300), height: 180, legend: { show: false },
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } },
      axes: [{ stroke: "#667" }, { stroke: "#667", size: 50 }],
      series: [{}, { label: label, stroke: color, fill: color + "22", width: 2 }],
    };
    charts[id] = new uPlot(opts, data, el);
  }

  function render() {
    var s = series();
    if (!s) return;
    draw("chart-rate", "events/s", "#2563eb", s.t, s.per_second);
    draw("chart-dead", "dead letters/h", "#dc2626", s.t, s.dead_per_hour);
  }

  document.addEventListener("DOMContentLoaded", render);
  document.addEventListener("htmx:afterSettle", render);
  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (id) {
      var el = document.getElementById(id);
      charts[id].setSize({ width: Math.max(el.clientWidth, 300), height: 180 });
    });
  });
})();
