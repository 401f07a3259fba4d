// The console's live updates: one EventSource per page, no framework, no build step.
// Each snapshot carries the text of every live cell ("cells"), copied into the elements
// marked data-field inside the session's or the account's element; the session page also
// moves its chart (TradingView Lightweight Charts, vendored beside this file).
(function () {
  "use strict";
  var host = document.querySelector("[data-stream]");
  if (!host || !window.EventSource) return;
  var banner = document.getElementById("live-state");

  function paint(scope, classed, item) {
    if (!scope) return;
    Object.keys(item.cells || {}).forEach(function (name) {
      scope.querySelectorAll('[data-field="' + name + '"]').forEach(function (cell) {
        if (cell.textContent !== item.cells[name]) cell.textContent = item.cells[name];
        if (name === "status") { cell.className = "badge status-" + item.status; cell.title = item.cells.reasons; }
      });
    });
    if (!classed || !item.status) return;
    classed.className = classed.className.replace(/\b(status|check)-\S+/g, "").trim() +
      " status-" + item.status + " check-" + item.broker_check;
    classed.dataset.status = item.status;
    classed.dataset.check = item.broker_check;
  }

  function bar(c) { return {time: c.time, open: +c.open, high: +c.high, low: +c.low, close: +c.close}; }
  function marks(list) {
    return list.map(function (m) {
      var buy = m.quantity > 0;
      return {time: m.time, position: buy ? "belowBar" : "aboveBar", color: buy ? "#1565c0" : "#c62828",
              shape: buy ? "arrowUp" : "arrowDown", text: m.intent + " " + (buy ? "+" : "") + m.quantity};
    }).sort(function (a, b) { return a.time - b.time; });
  }

  var chart = null;
  var raw = document.getElementById("session-data");
  if (raw && window.LightweightCharts) {
    var data = JSON.parse(raw.textContent);
    var made = LightweightCharts.createChart(host, {height: 380, timeScale: {timeVisible: true}});
    var series = made.addCandlestickSeries();
    chart = {series: series, api: "/api/sessions/" + data.session.id, reloading: false,
             stop: null, stopPrice: null};
    window.tradefleetChart = chart;  // what the chart shows, for a reader of the page (tests)
    draw(data);
    made.timeScale().fitContent();
  }
  // Every closed candle and marker, as the session page's data or its JSON API gives them.
  function draw(d) {
    var bars = d.candles.map(bar);
    if (d.partial && (!bars.length || d.partial.time > bars[bars.length - 1].time)) bars.push(bar(d.partial));
    chart.series.setData(bars);
    chart.series.setMarkers(marks(d.markers));
    chart.last = bars.length ? bars[bars.length - 1].time : 0;
    chart.lastBar = bars[bars.length - 1] || null;
    chart.markers = d.markers.length;
  }
  // A snapshot carries the newest closed candle and the forming one: when a candle closed
  // since the chart's last bar (one or several: a fast replay closes many a second), the
  // chart reads them all again rather than skip one.
  function moveChart(live) {
    var closed = live.last_closed;
    if (closed && closed.time > chart.last || live.markers.length !== chart.markers) {
      if (!chart.reloading) {
        chart.reloading = true;
        fetch(chart.api, {credentials: "same-origin"}).then(function (r) { return r.json(); })
          .then(draw).finally(function () { chart.reloading = false; });
      }
    } else {
      // the forming bar just closed (its final prices), then the new forming one
      [closed && closed.time === chart.last ? closed : null, live.partial].forEach(function (c) {
        if (c && c.time >= chart.last) { chart.lastBar = bar(c); chart.series.update(chart.lastBar); chart.last = c.time; }
      });
    }
    if (live.stop_price === chart.stopPrice) return;
    if (chart.stop) chart.series.removePriceLine(chart.stop);
    chart.stop = live.stop_price === null ? null :
      chart.series.createPriceLine({price: +live.stop_price, color: "#c62828", lineStyle: 2, title: "stop"});
    chart.stopPrice = live.stop_price;
  }

  var source = new EventSource(host.dataset.stream);
  source.addEventListener("snapshot", function (e) {
    var snap = JSON.parse(e.data);
    banner.hidden = true;
    if (snap.type === "fleet") {
      snap.sessions.forEach(function (s) { var row = document.getElementById("session-" + s.id); paint(row, row, s); });
      snap.accounts.forEach(function (t) { paint(document.getElementById("totals-" + t.account), null, t); });
      var asOf = document.getElementById("as-of");
      if (asOf) asOf.textContent = "as of " + snap.as_of.replace("T", " ").slice(0, 19) + " UTC";
    } else {
      paint(document.querySelector("main"), document.getElementById("session-" + snap.session.id), snap.session);
      if (chart) moveChart(snap);
    }
  });
  function pause(text) { banner.textContent = text; banner.hidden = false; }
  source.addEventListener("problem", function (e) { pause("live updates: " + JSON.parse(e.data).error); });
  source.onerror = function () { pause("live updates paused, reconnecting"); };
})();
