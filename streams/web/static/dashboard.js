/*
 * enginestream dashboard: polls the worker's JSON views every 2 s and draws the charts
 * as inline SVG, in plain JavaScript (no library, no network access beyond the worker).
 *
 * Machine-checkable output (the integration test compares it with the views' JSON):
 *   - every chart is an <svg data-chart="..."> (latency, success-rate, dead-letters,
 *     events-routed, jobs-by-status, training-tiers); a line chart also carries
 *     data-engine, data-size, data-from and data-to: the exact
 *     /engines/{id}/windows?size=&from=&to= query it shows;
 *   - every data point is a <circle data-engine data-series data-window-start
 *     data-value data-final>, every bar a <rect data-key data-value> plus a named
 *     attribute (data-reason, data-event-type, data-status, data-tier);
 *   - data-value is the number exactly as the view returned it (String(number)).
 *
 * Optional views (/jobs, /engines/{id}/status) are probed: a 404 hides their panel or
 * column, and they are probed again every 30 s.
 *
 * Query parameters: ?top=N engines in the small multiples (6), ?points=N windows per
 * chart (60), ?size=S window size in seconds (default: the smallest configured one; any
 * multiple of it works). The selected engine is kept in the URL hash (#engine=ID).
 *
 * Reads behind the token (ENGINESTREAM_API_TOKEN_FOR_READS): open /dashboard#token=TOKEN
 * once; the token is kept in sessionStorage (this tab only, reloads included) and taken
 * out of the address bar at once. Refused reads say so in the status line.
 */
(function () {
  "use strict";

  var REFRESH_MS = 2000;
  var REPROBE_MS = 30000;
  var STATUS_LIMIT = 100;
  var SVG_NS = "http://www.w3.org/2000/svg";

  var params = new URLSearchParams(window.location.search);
  var TOP_N = intParam("top", 6, 1, 48);
  var POINTS = intParam("points", 60, 1, 2000);
  var SIZE_PARAM = intParam("size", 0, 0, 31 * 86400);
  var TOKEN_KEY = "enginestream.api-token";
  var token = takeHashToken() || storedToken();

  var LATENCY_SERIES = [
    { name: "p50", field: "latency_p50_ms", cls: "s-p50" },
    { name: "p95", field: "latency_p95_ms", cls: "s-p95" },
    { name: "p99", field: "latency_p99_ms", cls: "s-p99" }
  ];
  var SUCCESS_SERIES = [{ name: "success_rate", field: "success_rate", cls: "s-success" }];
  var JOB_STATUSES = ["queued", "running", "completed", "failed", "cancelled"];
  var TIERS = ["gold", "silver", "bronze"];

  var state = {
    refreshes: 0,
    selected: selectedFromHash(),
    windows: {}, // engine id -> last good windows answer (kept while a view answers 503)
    optional: {
      jobs: { available: true, checkedAt: 0 },
      status: { available: true, checkedAt: 0 }
    },
    timer: null,
    generation: 0
  };

  // --- small helpers ------------------------------------------------------------------

  function intParam(name, fallback, min, max) {
    var raw = params.get(name);
    var value = raw === null ? NaN : parseInt(raw, 10);
    if (!isFinite(value)) return fallback;
    return Math.max(min, Math.min(max, value));
  }

  function selectedFromHash() {
    var match = /(?:^#|&)engine=([^&]*)/.exec(window.location.hash);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function tokenStore() {
    try {
      return window.sessionStorage;
    } catch (err) {
      return null; // storage disabled: the token lasts as long as the page
    }
  }

  function storedToken() {
    var store = tokenStore();
    return (store && store.getItem(TOKEN_KEY)) || "";
  }

  function keepToken(value) {
    var store = tokenStore();
    if (store) store.setItem(TOKEN_KEY, value);
    return value;
  }

  // #token=... is kept and removed from the address: not left in history or bookmarks.
  function takeHashToken() {
    var match = /(?:^#|&)token=([^&]*)/.exec(window.location.hash);
    if (!match) return "";
    var rest = window.location.hash.slice(1).split("&").filter(function (part) {
      return part.indexOf("token=") !== 0;
    }).join("&");
    window.history.replaceState(null, "", window.location.pathname + window.location.search +
                                (rest ? "#" + rest : ""));
    return keepToken(decodeURIComponent(match[1]));
  }

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    appendAll(node, children);
    return node;
  }

  function svg(tag, attrs, children) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    appendAll(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, value === true ? "" : String(value));
    });
  }

  function appendAll(node, children) {
    if (!children) return;
    (Array.isArray(children) ? children : [children]).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
  }

  function replaceChildren(node, children) {
    while (node.firstChild) node.removeChild(node.firstChild);
    appendAll(node, children);
  }

  function isNumber(value) {
    return typeof value === "number" && isFinite(value);
  }

  function fmtInt(value) {
    return isNumber(value) ? Math.round(value).toLocaleString("en-US") : "—";
  }

  function fmtMs(value) {
    if (!isNumber(value)) return "—";
    if (value >= 1000) return (value / 1000).toFixed(2) + " s";
    return value >= 100 ? value.toFixed(0) : value.toFixed(1);
  }

  function fmtPct(rate) {
    return isNumber(rate) ? (rate * 100).toFixed(1) + "%" : "—";
  }

  function fmtSeconds(seconds) {
    if (!isNumber(seconds)) return "—";
    var abs = Math.abs(seconds);
    if (abs < 60) return seconds.toFixed(1) + " s";
    if (abs < 3600) return (seconds / 60).toFixed(1) + " min";
    if (abs < 86400 * 2) return (seconds / 3600).toFixed(1) + " h";
    return (seconds / 86400).toFixed(1) + " d";
  }

  function utcTime(epochS, withDate) {
    var iso = new Date(epochS * 1000).toISOString(); // 2023-11-14T22:14:00.000Z
    return withDate ? iso.slice(0, 10) + " " + iso.slice(11, 19) : iso.slice(11, 19);
  }

  function sum(values) {
    return values.reduce(function (a, b) {
      return a + (isNumber(b) ? b : 0);
    }, 0);
  }

  function rateClass(rate) {
    if (!isNumber(rate)) return "";
    return rate >= 0.95 ? "rate-good" : rate >= 0.8 ? "rate-warn" : "rate-bad";
  }

  // --- fetching -----------------------------------------------------------------------

  // Answers {status, body, json}: `json` false when the body is not JSON (a 404 of a
  // route that does not exist is plain text, a view's own 404 is JSON). status 0: the
  // worker did not answer at all.
  function getJSON(path) {
    var headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    return fetch(path, { cache: "no-store", headers: headers })
      .then(function (response) {
        return response.text().then(function (text) {
          var body = null;
          var json = true;
          try {
            body = text ? JSON.parse(text) : null;
          } catch (err) {
            json = false;
          }
          return { status: response.status, body: body, json: json };
        });
      })
      .catch(function () {
        return { status: 0, body: null, json: false };
      });
  }

  function optionalDue(name) {
    var entry = state.optional[name];
    return entry.available || Date.now() - entry.checkedAt >= REPROBE_MS;
  }

  function markOptional(name, available) {
    state.optional[name].available = available;
    state.optional[name].checkedAt = Date.now();
  }

  function fetchJobs() {
    if (!optionalDue("jobs")) return Promise.resolve(null);
    return getJSON("/jobs").then(function (answer) {
      if (answer.status === 404 || answer.status === 405) {
        markOptional("jobs", false);
        return null;
      }
      if (answer.status === 200) markOptional("jobs", true);
      return answer;
    });
  }

  // Per engine: its /engines/{id}/status answer, or null. A 404 that is not JSON means
  // the view does not exist (the column is then hidden); a JSON 404 is an engine the
  // view does not know.
  function fetchStatuses(ids) {
    if (!optionalDue("status") || ids.length === 0) return Promise.resolve(null);
    var wanted = ids.slice(0, STATUS_LIMIT);
    return getJSON("/engines/" + encodeURIComponent(wanted[0]) + "/status").then(function (first) {
      if ((first.status === 404 && !first.json) || first.status === 405) {
        markOptional("status", false);
        return null;
      }
      markOptional("status", true);
      var answers = {};
      answers[wanted[0]] = first;
      return Promise.all(
        wanted.slice(1).map(function (id) {
          return getJSON("/engines/" + encodeURIComponent(id) + "/status").then(function (a) {
            answers[id] = a;
          });
        })
      ).then(function () {
        return answers;
      });
    });
  }

  function windowQuery(id, summary, sizeOverride) {
    var record = summary.latest_final || summary.current;
    var base = record && record.window_size_s;
    var size = sizeOverride || base;
    if (!isNumber(size) || size <= 0) return null;
    var latest = Math.max(
      summary.latest_final ? summary.latest_final.window_start : -Infinity,
      summary.current ? summary.current.window_start : -Infinity
    );
    if (!isFinite(latest)) return null;
    var last = Math.floor(latest / size) * size;
    var from = last - (POINTS - 1) * size;
    var to = last + size;
    return {
      engine: id,
      size: size,
      from: from,
      to: to,
      path:
        "/engines/" + encodeURIComponent(id) + "/windows?size=" + size +
        "&from=" + from + "&to=" + to
    };
  }

  function fetchWindows(query) {
    return getJSON(query.path).then(function (answer) {
      var key = query.engine;
      if (answer.status === 200 && answer.body && Array.isArray(answer.body.windows)) {
        state.windows[key] = { query: query, windows: answer.body.windows };
      } else if (answer.status === 404) {
        state.windows[key] = { query: query, windows: [] };
      } // else (503, offline): keep the last good answer
      return answer.status;
    });
  }

  // --- choosing what to show ----------------------------------------------------------

  function traffic(summary) {
    var final = summary.latest_final;
    var current = summary.current;
    return [final ? final.count || 0 : 0, current ? current.count || 0 : 0];
  }

  function topEngines(engines) {
    return Object.keys(engines)
      .sort(function (a, b) {
        var ta = traffic(engines[a]);
        var tb = traffic(engines[b]);
        return tb[0] - ta[0] || tb[1] - ta[1] || (a < b ? -1 : a > b ? 1 : 0);
      })
      .slice(0, TOP_N);
  }

  function shownEngines(engines) {
    if (state.selected && engines[state.selected]) return [state.selected];
    return topEngines(engines);
  }

  // --- charts -------------------------------------------------------------------------

  function niceStep(span, ticks) {
    var raw = span / Math.max(1, ticks);
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var unit = raw / power;
    var nice = unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 2.5 ? 2.5 : unit <= 5 ? 5 : 10;
    return nice * power;
  }

  function yDomain(values, kind) {
    if (kind === "rate") {
      var low = values.length ? Math.min.apply(null, values) : 1;
      var floor = Math.max(0, Math.floor((low - 0.02) * 20) / 20);
      return { min: Math.min(floor, 0.9), max: 1, step: niceStep(1 - Math.min(floor, 0.9), 4) };
    }
    var high = values.length ? Math.max.apply(null, values) : 1;
    var step = niceStep(high > 0 ? high : 1, 4);
    return { min: 0, max: Math.ceil((high > 0 ? high : 1) / step) * step, step: step };
  }

  // The <svg> of every chart: data-chart names it for the integration test (see the
  // header), then the chart's own data-* attributes; attributes keep this order.
  function chartRoot(chart, width, height, label, data) {
    var attrs = {
      class: "chart",
      viewBox: "0 0 " + width + " " + height,
      role: "img",
      "data-chart": chart
    };
    Object.keys(data).forEach(function (key) {
      attrs[key] = data[key];
    });
    attrs["aria-label"] = label;
    return svg("svg", attrs);
  }

  // A line chart of window series. spec: {chart, engine, query, windows, series,
  // kind: "ms" | "rate", width, height}.
  function lineChart(spec) {
    var W = spec.width;
    var H = spec.height;
    var m = { left: 46, right: 12, top: 10, bottom: 24 };
    var plotW = W - m.left - m.right;
    var plotH = H - m.top - m.bottom;
    var size = spec.query.size;
    var root = chartRoot(spec.chart, W, H, spec.chart + " of " + spec.engine, {
      "data-engine": spec.engine,
      "data-size": size,
      "data-from": spec.query.from,
      "data-to": spec.query.to,
      "data-points": 0
    });

    var windows = spec.windows.filter(function (w) {
      return isNumber(w.window_start);
    });
    var values = [];
    windows.forEach(function (w) {
      spec.series.forEach(function (s) {
        if (isNumber(w[s.field])) values.push(w[s.field]);
      });
    });
    if (values.length === 0) {
      root.appendChild(
        svg("text", { class: "empty-text", x: W / 2, y: H / 2, "text-anchor": "middle",
                      text: "no windows yet" })
      );
      return root;
    }

    var starts = windows.map(function (w) { return w.window_start; });
    var x0 = Math.min.apply(null, starts);
    var x1 = Math.max.apply(null, starts);
    if (x1 - x0 < size) {
      x0 -= size;
      x1 += size;
    } else {
      x0 -= size / 2;
      x1 += size / 2;
    }
    var y = yDomain(values, spec.kind);
    function px(t) { return m.left + ((t - x0) / (x1 - x0)) * plotW; }
    function py(v) {
      var clamped = Math.max(y.min, Math.min(y.max, v));
      return m.top + plotH - ((clamped - y.min) / (y.max - y.min)) * plotH;
    }
    function r1(v) { return Math.round(v * 10) / 10; }

    // Grid and y axis labels.
    var grid = svg("g", { class: "grid" });
    for (var v = y.min, i = 0; v <= y.max + y.step / 1000 && i < 20; v += y.step, i++) {
      var gy = r1(py(v));
      grid.appendChild(svg("line", { class: "gridline", x1: m.left, x2: W - m.right, y1: gy, y2: gy }));
      var label = spec.kind === "rate" ? fmtTick(v * 100, y.step * 100) + "%" : fmtTick(v, y.step);
      grid.appendChild(svg("text", { x: m.left - 6, y: gy + 3, "text-anchor": "end", text: label }));
    }
    // X axis: ticks on window starts, about five of them.
    var span = x1 - x0;
    var tickStep = Math.max(size, Math.ceil(span / 5 / size) * size);
    for (var t = Math.ceil(x0 / tickStep) * tickStep; t <= x1; t += tickStep) {
      var gx = r1(px(t));
      grid.appendChild(svg("line", { class: "axis", x1: gx, x2: gx, y1: m.top + plotH, y2: m.top + plotH + 4 }));
      grid.appendChild(svg("text", { x: gx, y: H - 6, "text-anchor": "middle", text: utcTime(t) }));
    }
    grid.appendChild(svg("line", { class: "axis", x1: m.left, x2: W - m.right,
                                   y1: m.top + plotH, y2: m.top + plotH }));
    root.appendChild(grid);

    var points = 0;
    spec.series.forEach(function (s) {
      var group = svg("g", { class: "series " + s.cls, "data-series": s.name });
      var path = "";
      var previous = null;
      var present = windows.filter(function (w) { return isNumber(w[s.field]); });
      present.forEach(function (w) {
        var cmd = previous !== null && w.window_start - previous === size ? "L" : "M";
        path += cmd + r1(px(w.window_start)) + " " + r1(py(w[s.field])) + " ";
        previous = w.window_start;
      });
      if (spec.kind === "rate" && present.length > 1) {
        var first = present[0];
        var last = present[present.length - 1];
        var area = path.replace(/M/g, "L").replace(/^L/, "M") +
          "L" + r1(px(last.window_start)) + " " + (m.top + plotH) +
          " L" + r1(px(first.window_start)) + " " + (m.top + plotH) + " Z";
        group.appendChild(svg("path", { class: "area " + s.cls, d: area }));
      }
      if (path) group.appendChild(svg("path", { class: "line " + s.cls, d: path.trim() }));
      present.forEach(function (w) {
        var value = w[s.field];
        var final = w.final !== false;
        var shown = spec.kind === "rate" ? fmtPct(value) : fmtMs(value) + " ms";
        var circle = svg(
          "circle",
          {
            class: s.cls + (final ? "" : " open"),
            cx: r1(px(w.window_start)),
            cy: r1(py(value)),
            r: spec.width > 600 ? 3.2 : 2.6,
            "data-engine": spec.engine,
            "data-series": s.name,
            "data-window-start": w.window_start,
            "data-window-size": size,
            "data-value": String(value),
            "data-final": final ? "true" : "false",
            "data-revision": isNumber(w.revision) ? w.revision : null
          },
          svg("title", {
            text: spec.engine + " · " + s.name + " · " + utcTime(w.window_start, true) +
              " UTC · " + shown + " · " + fmtInt(w.count) + " requests" +
              (final ? "" : " (open window)")
          })
        );
        group.appendChild(circle);
        points += 1;
      });
      root.appendChild(group);
    });
    root.setAttribute("data-points", String(points));
    return root;
  }

  // A tick label with as many decimals as the step needs (2.5 -> one, 0.25 -> two).
  function fmtTick(value, step) {
    for (var decimals = 0; decimals < 4; decimals++) {
      var scaled = step * Math.pow(10, decimals);
      if (Math.abs(scaled - Math.round(scaled)) < 1e-6) break;
    }
    return value.toFixed(decimals);
  }

  // A horizontal bar chart. spec: {chart, attr (e.g. "reason"), items: [{key, value}],
  // emptyText}.
  function barChart(spec) {
    var W = 340;
    var row = 24;
    var labelW = 122;
    var valueW = 48;
    var items = spec.items;
    var H = Math.max(1, items.length) * row + 8;
    var root = chartRoot(spec.chart, W, H, spec.chart, { "data-bars": items.length });
    if (items.length === 0) {
      root.appendChild(svg("text", { class: "empty-text", x: 4, y: 18, text: spec.emptyText || "none" }));
      return root;
    }
    var max = Math.max.apply(null, items.map(function (item) { return item.value; }).concat([1]));
    var barW = W - labelW - valueW;
    items.forEach(function (item, index) {
      var top = 4 + index * row;
      var width = Math.max(item.value > 0 ? 2 : 0, (item.value / max) * barW);
      var attrs = {
        class: "bar",
        x: labelW,
        y: top + 4,
        width: Math.round(width * 10) / 10,
        height: row - 10,
        rx: 3,
        "data-key": item.key,
        "data-value": String(item.value)
      };
      attrs["data-" + spec.attr] = item.key;
      var label = item.key.length > 19 ? item.key.slice(0, 18) + "…" : item.key;
      root.appendChild(svg("rect", { class: "bar-track", x: labelW, y: top + 4, width: barW,
                                     height: row - 10, rx: 3 }));
      root.appendChild(svg("rect", attrs, svg("title", { text: item.key + ": " + fmtInt(item.value) })));
      root.appendChild(svg("text", { class: "bar-label", x: labelW - 8, y: top + row / 2 + 3,
                                     "text-anchor": "end", text: label }));
      root.appendChild(svg("text", { class: "bar-value", x: labelW + width + 6,
                                     y: top + row / 2 + 3, text: fmtInt(item.value) }));
    });
    return root;
  }

  function countsToItems(counts, order) {
    var keys = Object.keys(counts || {});
    if (order) {
      keys = order.concat(keys.filter(function (k) { return order.indexOf(k) < 0; }).sort());
    } else {
      keys.sort(function (a, b) { return (counts[b] || 0) - (counts[a] || 0) || (a < b ? -1 : 1); });
    }
    return keys.map(function (key) {
      var value = counts && isNumber(counts[key]) ? counts[key] : 0;
      return { key: key, value: value };
    });
  }

  // --- panels -------------------------------------------------------------------------

  function renderTiles(stats, training, engines) {
    var router = (stats && stats.router) || {};
    function total(map) {
      return sum(Object.keys(map || {}).map(function (k) { return map[k]; }));
    }
    var tiers = (training && training.samples_by_tier) || null;
    var dead = total(router.dead_letters);
    var tiles = [
      { id: "messages-in", label: "Messages in", value: total(router.messages_in),
        detail: Object.keys(router.messages_in || {}).length + " topic(s)" },
      { id: "events-routed", label: "Events routed", value: total(router.events_routed),
        detail: Object.keys(router.events_routed || {}).length + " event types" },
      { id: "messages-out", label: "Messages out", value: total(router.messages_out),
        detail: Object.keys(router.messages_out || {}).length + " topic(s)" },
      { id: "dead-letters", label: "Dead letters", value: dead, alert: dead > 0,
        detail: Object.keys(router.dead_letters || {}).length + " reason(s)" },
      { id: "engines", label: "Engines", value: engines ? Object.keys(engines).length : null,
        detail: "with windows" },
      { id: "training-samples", label: "Training samples",
        value: tiers ? sum(TIERS.map(function (t) { return tiers[t]; })) : null,
        detail: tiers ? TIERS.map(function (t) { return t + " " + fmtInt(tiers[t]); }).join(" · ") : "" }
    ];
    replaceChildren(
      $("tiles"),
      tiles.map(function (tile) {
        return el("div", { class: "tile" + (tile.alert ? " alert" : ""), "data-tile": tile.id,
                           "data-value": isNumber(tile.value) ? tile.value : null }, [
          el("div", { class: "label", text: tile.label }),
          el("div", { class: "value", text: fmtInt(tile.value) }),
          el("div", { class: "detail", text: tile.detail })
        ]);
      })
    );
  }

  function renderEngineCharts(engines, shown) {
    var wide = shown.length === 1;
    var cards = shown.map(function (id) {
      var summary = engines[id] || {};
      var held = state.windows[id];
      var last = summary.latest_final;
      var facts = last
        ? "last final: p95 " + fmtMs(last.latency_p95_ms) + " ms · " + fmtPct(last.success_rate) +
          " ok · " + fmtInt(last.count) + " req"
        : "no final window yet";
      var children = [
        el("div", { class: "card-head" }, [
          el("h3", { text: id }),
          el("span", { class: "facts", text: facts })
        ])
      ];
      if (!held) {
        children.push(el("div", { class: "empty", text: "waiting for windows…" }));
      } else {
        var dims = wide ? { width: 1100, height: 240 } : { width: 480, height: 170 };
        var dimsRate = wide ? { width: 1100, height: 170 } : { width: 480, height: 120 };
        children.push(el("p", { class: "chart-title", text: "Latency (ms) p50 / p95 / p99" }));
        children.push(lineChart({ chart: "latency", engine: id, query: held.query,
                                  windows: held.windows, series: LATENCY_SERIES, kind: "ms",
                                  width: dims.width, height: dims.height }));
        children.push(el("p", { class: "chart-title", text: "Success rate" }));
        children.push(lineChart({ chart: "success-rate", engine: id, query: held.query,
                                  windows: held.windows, series: SUCCESS_SERIES, kind: "rate",
                                  width: dimsRate.width, height: dimsRate.height }));
      }
      return el("article", { class: "card" + (wide ? " wide" : ""), "data-engine": id }, children);
    });
    if (cards.length === 0) cards = [el("div", { class: "empty", text: "No engine has windows yet." })];
    replaceChildren($("engine-charts"), cards);
    var anyQuery = shown.map(function (id) { return state.windows[id]; }).filter(Boolean)[0];
    $("range-note").textContent = anyQuery
      ? "windows of " + anyQuery.query.size + " s · last " + POINTS + " · " +
        (state.selected && engines[state.selected] ? "engine " + state.selected
                                                    : "top " + TOP_N + " by requests")
      : "";
  }

  // The engine's lifecycle state from /engines/{id}/status (streams.engine_status:
  // started, model_loaded, warm, stopping, error), with its model and last error.
  function statusText(answer) {
    if (!answer) return null;
    if (answer.status === 404) return { text: "unknown", cls: "", title: "no lifecycle events" };
    if (answer.status !== 200 || !answer.body) return { text: "—", cls: "", title: "" };
    var body = answer.body;
    var value = body.state !== undefined ? body.state : body.status;
    if (value === null || value === undefined) return { text: "—", cls: "", title: "" };
    var text = String(value);
    var lower = text.toLowerCase();
    var cls = /^(warm|ok|up|healthy|serving|ready|running)$/.test(lower) ? "good"
      : /^(started|model_loaded|starting|stopping|degraded|warn)$/.test(lower) ? "warn"
      : /^(error|down|failed|unhealthy|offline|stopped)$/.test(lower) ? "bad" : "";
    var details = [];
    if (body.model) details.push("model " + body.model);
    if (body.last_error_kind) details.push("last error: " + body.last_error_kind);
    if (isNumber(body.requests_served)) details.push(fmtInt(body.requests_served) + " requests served");
    return { text: text, cls: cls, title: details.join(" · ") };
  }

  function renderEngineTable(engines, statuses, asOf) {
    var showStatus = statuses !== null && state.optional.status.available;
    document.querySelectorAll("#engine-table .col-status").forEach(function (th) {
      th.hidden = !showStatus;
    });
    var ids = Object.keys(engines).sort();
    var rows = ids.map(function (id) {
      var summary = engines[id];
      var last = summary.latest_final;
      var current = summary.current;
      var lag = isNumber(summary.watermark) && isNumber(asOf) ? asOf - summary.watermark : null;
      var status = showStatus ? statusText(statuses[id]) : null;
      var tr = el("tr", { "data-engine": id, class: id === state.selected ? "selected" : null }, [
        el("td", { "data-field": "engine_id", text: id }),
        el("td", { "data-field": "status", class: "col-status", hidden: !showStatus,
                   "data-value": status ? status.text : null },
           status ? el("span", { class: "pill " + status.cls, title: status.title || null,
                                 text: status.text }) : null),
        el("td", { "data-field": "window_start", "data-value": last ? last.window_start : null,
                   text: last ? utcTime(last.window_start, true) : "—" }),
        el("td", { class: "num", "data-field": "count", "data-value": last ? last.count : null,
                   text: last ? fmtInt(last.count) : "—" }),
        el("td", { class: "num " + rateClass(last && last.success_rate), "data-field": "success_rate",
                   "data-value": last ? last.success_rate : null,
                   text: last ? fmtPct(last.success_rate) : "—" }),
        el("td", { class: "num", "data-field": "latency_p50_ms",
                   "data-value": last ? last.latency_p50_ms : null, text: last ? fmtMs(last.latency_p50_ms) : "—" }),
        el("td", { class: "num", "data-field": "latency_p95_ms",
                   "data-value": last ? last.latency_p95_ms : null, text: last ? fmtMs(last.latency_p95_ms) : "—" }),
        el("td", { class: "num", "data-field": "latency_p99_ms",
                   "data-value": last ? last.latency_p99_ms : null, text: last ? fmtMs(last.latency_p99_ms) : "—" }),
        el("td", { class: "num", "data-field": "current_count",
                   "data-value": current ? current.count : null,
                   text: current ? fmtInt(current.count) + " req" : "—" }),
        el("td", { class: "num", "data-field": "watermark_lag_s", "data-value": lag,
                   text: fmtSeconds(lag) })
      ]);
      tr.addEventListener("click", function () {
        select(id === state.selected ? "" : id);
      });
      return tr;
    });
    replaceChildren(document.querySelector("#engine-table tbody"), rows);
    $("engine-count").textContent = ids.length + " engine(s)" +
      (showStatus ? "" : " · status view not available");
  }

  function renderSelect(engines) {
    var select = $("engine-select");
    var ids = Object.keys(engines).sort();
    var wanted = [""].concat(ids);
    var current = Array.prototype.map.call(select.options, function (o) { return o.value; });
    if (current.join("\n") !== wanted.join("\n")) {
      replaceChildren(select, wanted.map(function (id) {
        return el("option", { value: id, text: id || "Top " + TOP_N + " by requests" });
      }));
    }
    select.value = engines[state.selected] ? state.selected : "";
  }

  function renderBars(containerId, spec) {
    replaceChildren($(containerId), barChart(spec));
  }

  function renderJobs(answer) {
    var panel = $("jobs-panel");
    if (!state.optional.jobs.available) {
      panel.hidden = true;
      return;
    }
    if (!answer || answer.status !== 200) return; // keep what is shown (503, offline)
    var body = answer.body;
    var jobs = Array.isArray(body) ? body : body && Array.isArray(body.jobs) ? body.jobs : null;
    var counts = {};
    JOB_STATUSES.forEach(function (s) { counts[s] = 0; });
    if (jobs) {
      jobs.forEach(function (job) {
        var status = job && typeof job.status === "string" ? job.status : "unknown";
        counts[status] = (counts[status] || 0) + 1;
      });
    } else if (body && typeof body === "object" && (body.by_status || body.counts)) {
      var given = body.by_status || body.counts;
      Object.keys(given).forEach(function (s) { counts[s] = given[s]; });
    }
    panel.hidden = false;
    renderBars("jobs", { chart: "jobs-by-status", attr: "status",
                         items: countsToItems(counts, JOB_STATUSES) });
  }

  function setStatus(kind, text) {
    var node = $("status");
    node.setAttribute("data-state", kind);
    node.querySelector("b").textContent = text;
  }

  // --- the refresh loop ---------------------------------------------------------------

  function refresh() {
    var generation = ++state.generation;
    return Promise.all([getJSON("/engines"), getJSON("/stats"), getJSON("/training/stats"), fetchJobs()])
      .then(function (answers) {
        var enginesAnswer = answers[0];
        var engines = enginesAnswer.status === 200 && enginesAnswer.body ? enginesAnswer.body.engines || {} : null;
        var asOf = engines ? enginesAnswer.body.as_of : null;
        var shown = engines ? shownEngines(engines) : [];
        var queries = shown
          .map(function (id) { return windowQuery(id, engines[id], SIZE_PARAM); })
          .filter(Boolean);
        return Promise.all([
          Promise.all(queries.map(fetchWindows)),
          engines ? fetchStatuses(Object.keys(engines).sort()) : Promise.resolve(null)
        ]).then(function (more) {
          return { answers: answers, engines: engines, asOf: asOf, shown: shown,
                   windowStatuses: more[0], statuses: more[1] };
        });
      })
      .then(function (data) {
        // A newer refresh started meanwhile (the selection changed): it renders.
        if (generation === state.generation) render(data);
      });
  }

  function render(data) {
    var answers = data.answers;
    var stats = answers[1].status === 200 ? answers[1].body : null;
    var training = answers[2].status === 200 ? answers[2].body : null;
    var all = [answers[0], answers[1], answers[2]];
    var offline = all.some(function (a) { return a.status === 0; });
    var refused = all.some(function (a) { return a.status === 401 || a.status === 403; });
    var recovering = all.concat(data.windowStatuses.map(function (s) { return { status: s }; }))
      .some(function (a) { return a.status === 503; });

    if (data.engines) {
      renderSelect(data.engines);
      renderEngineCharts(data.engines, data.shown);
      renderEngineTable(data.engines, data.statuses, data.asOf);
    }
    if (stats) {
      var router = stats.router || {};
      renderBars("dead-letters", { chart: "dead-letters", attr: "reason",
                                   items: countsToItems(router.dead_letters),
                                   emptyText: "no dead letters" });
      renderBars("events-routed", { chart: "events-routed", attr: "event-type",
                                    items: countsToItems(router.events_routed),
                                    emptyText: "nothing routed yet" });
    }
    if (training) {
      renderBars("training", { chart: "training-tiers", attr: "tier",
                               items: countsToItems(training.samples_by_tier || {}, TIERS) });
    }
    if (stats || training || data.engines) {
      renderTiles(stats, training, data.engines);
    }
    renderJobs(answers[3]);

    if (offline) setStatus("offline", "worker not answering");
    else if (refused) setStatus("offline", "API token needed: open /dashboard#token=…");
    else if (recovering) setStatus("recovering", "recovering — retrying");
    else setStatus("live", "live");
    var now = new Date();
    $("updated").textContent = "updated " + utcTime(now.getTime() / 1000) + " UTC";
    state.refreshes += 1;
    document.body.setAttribute("data-refreshes", String(state.refreshes));
    document.body.setAttribute("data-updated", String(now.getTime() / 1000));
  }

  function schedule(delay) {
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = setTimeout(loop, delay);
  }

  function loop() {
    state.timer = null;
    refresh()
      .catch(function (err) {
        setStatus("offline", "error: " + (err && err.message ? err.message : err));
      })
      .then(function () {
        if (state.timer === null) schedule(REFRESH_MS);
      });
  }

  function select(id) {
    state.selected = id;
    var hash = id ? "#engine=" + encodeURIComponent(id) : "";
    window.history.replaceState(null, "", window.location.pathname + window.location.search + hash);
    schedule(0);
  }

  $("engine-select").addEventListener("change", function (event) {
    select(event.target.value);
  });
  window.addEventListener("hashchange", function () {
    var id = selectedFromHash();
    if (id !== state.selected) {
      state.selected = id;
      schedule(0);
    }
  });

  loop();
})();
