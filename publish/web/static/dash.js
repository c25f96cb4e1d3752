// Draws the dashboards' charts with uPlot from the numbers embedded in each
// figure (<script type="application/json" id="data-ID">), the same numbers
// as the figure's table, SVG and CSV. Offers each chart as a PNG.
(function () {
  "use strict";
  var palette = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9"];
  var charts = {};
  window.neubotCharts = charts; // for the browser test

  function build(c, el) {
    var xs, axisX = { label: c.xlabel }, scaleX = {};
    if (c.xname === "day") {
      xs = c.x.map(function (d) { return Date.parse(d + "T00:00:00Z") / 1000; });
      scaleX.time = true;
      // Whole days only: the numbers are daily.
      axisX.incrs = [86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400, 91 * 86400];
      axisX.values = function (u, splits) {
        return splits.map(function (v) { return new Date(v * 1000).toISOString().slice(5, 10); });
      };
    } else {
      xs = c.x.map(function (_, i) { return i; });
      scaleX.time = false;
      axisX.values = function (u, splits) {
        return splits.map(function (v) { return Number.isInteger(v) && c.x[v] !== undefined ? c.x[v] : ""; });
      };
      if (c.kind === "bars") {
        scaleX.range = [-0.5, c.x.length - 0.5];
        axisX.space = 80; // bucket labels are wide: fewer of them
        axisX.incrs = [1, 2, 3, 5, 10, 20];
      }
    }
    var data = [xs], series = [{ label: c.xlabel }], k = 0;
    c.series.forEach(function (s) {
      if (!s.plot) { return; }
      data.push(s.values);
      var col = palette[k++ % palette.length];
      var o = { label: s.name, stroke: col, width: 2 };
      if (c.kind === "bars") {
        o.fill = col; o.paths = uPlot.paths.bars({ size: [0.8, 60] }); o.points = { show: false };
      }
      series.push(o);
    });
    var width = Math.max(280, el.clientWidth);
    var opts = {
      width: width, height: Math.round(Math.min(360, width * 0.6)),
      scales: { x: scaleX, y: { range: function (u, lo, hi) { return [0, hi > 0 ? hi * 1.05 : 1]; } } },
      axes: [axisX, { label: c.ylabel }],
      series: series,
      legend: { live: true },
    };
    return new uPlot(opts, data, el);
  }

  function pngOf(id) {
    var u = charts[id], c = JSON.parse(document.getElementById("data-" + id).textContent);
    var src = u.ctx.canvas, pad = 40, out = document.createElement("canvas");
    out.width = src.width; out.height = src.height + pad;
    var g = out.getContext("2d");
    g.fillStyle = "#fff"; g.fillRect(0, 0, out.width, out.height);
    g.fillStyle = "#000"; g.font = "bold " + Math.round(16 * devicePixelRatio) + "px sans-serif";
    g.fillText(c.title, 10, Math.round(26 * devicePixelRatio));
    g.drawImage(src, 0, pad);
    out.toBlob(function (blob) {
      var a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = location.pathname.replace(/\W+/g, "-").replace(/^-|-$/g, "") + "-" + id + ".png";
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(function () { URL.revokeObjectURL(a.href); }, 10000);
    }, "image/png");
  }

  function init() {
    if (typeof uPlot === "undefined") {
      document.querySelectorAll(".plot").forEach(function (el) {
        el.textContent = "Chart library not installed (run scripts/setup): the numbers are in the table below.";
      });
      return;
    }
    document.querySelectorAll("script[type='application/json'][id^='data-']").forEach(function (s) {
      var c = JSON.parse(s.textContent), el = document.getElementById("plot-" + c.id);
      if (!el || !c.x || c.x.length === 0) { if (el) { el.textContent = "No data in this period."; } return; }
      charts[c.id] = build(c, el);
      var b = document.querySelector("button.png[data-chart='" + c.id + "']");
      if (b) { b.hidden = false; b.addEventListener("click", function () { pngOf(c.id); }); }
    });
    var t;
    window.addEventListener("resize", function () {
      clearTimeout(t);
      t = setTimeout(function () {
        Object.keys(charts).forEach(function (id) {
          var el = document.getElementById("plot-" + id), w = Math.max(280, el.clientWidth);
          charts[id].setSize({ width: w, height: Math.round(Math.min(360, w * 0.6)) });
        });
      }, 150);
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
