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
    var bars = data.candles.map(bar);
    if (data.partial && (!bars.length || data.partial.time > bars[bars.length - 1].time)) bars.push(bar(data.partial));
    series.setData(bars);
    made.timeScale().fitContent();
    series.setMarkers(marks(data.markers));
    chart = {series: series, last: bars.length ? bars[bars.length - 1].time : 0, lastBar: bars[bars.length - 1] || null,
             stop: null, stopPrice: null, markers: data.markers.length};
    window.tradefleetChart = chart;  // what the chart shows, for a reader of the page (tests)
  }
  function moveChart(live) {
    [live.last_closed, live.partial].forEach(function (c) {
      if (c && c.time >= chart.last) { chart.lastBar = bar(c); chart.series.update(chart.lastBar); chart.last = c.time; }
    });
    if (live.markers.length !== chart.markers) { chart.series.setMarkers(marks(live.markers)); chart.markers = live.markers.length; }
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
