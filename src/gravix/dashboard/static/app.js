/* Gravix dashboard: the page state lives in the URL; every panel reads the data API of the
   server that served this file. Times are UTC throughout. */
"use strict";

(() => {
  const RANGES = { "15m": 15, "1h": 60, "3h": 180, "12h": 720, "24h": 1440, "7d": 10080, "30d": 43200 };
  const DEFAULTS = {
    service: "", range: "3h", from: "", to: "", compare: "", apdex: "500",
    path: "", method: "", sort: "errors", order: "",
  };
  const REFRESH_MS = 60000;
  const STALE_MS = 10 * 60000;
  const C = {
    red: "#e03131", orange: "#f08c00", blue: "#1c7ed6", violet: "#7048e8", pink: "#c2255c",
    green: "#2f9e44", grey: "#98a2ad", grid: "#eef1f4", line: "#dde3e9", text: "#1f2933",
  };
  const CHARTS = ["errors", "counts", "latency", "requests", "heatmap", "apdex"];
  const TEXT_SORTS = ["service", "method", "path_template"];
  const $ = (id) => document.getElementById(id);

  let state = readState();
  let timer = null;
  let generation = 0;
  let knownServices = [];
  // plotly.js runs after this file (both deferred): only the charts wait for it
  const plotlyReady = new Promise((resolve, reject) => {
    const script = $("plotly-js");
    if (window.Plotly) { resolve(); return; }
    script.addEventListener("load", () => resolve());
    script.addEventListener("error", () =>
      reject(Object.assign(new Error("the chart library did not load"), { status: 503 })));
  });

  // --- state and URL ------------------------------------------------------------------------

  function readState() {
    const q = new URLSearchParams(location.search);
    const s = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS)) if (q.has(key)) s[key] = q.get(key);
    if (s.from && s.to) s.range = "";
    else { s.from = ""; s.to = ""; if (!RANGES[s.range]) s.range = DEFAULTS.range; }
    return s;
  }

  function stateQuery() {
    const q = new URLSearchParams();
    for (const [key, value] of Object.entries(state)) {
      if (value && value !== DEFAULTS[key]) q.set(key, value);
    }
    if (state.from && state.to) q.delete("range");
    else if (state.range !== DEFAULTS.range) q.set("range", state.range);
    return q.toString();
  }

  function commit(push) {
    const url = location.pathname + (stateQuery() ? "?" + stateQuery() : "");
    if (push) history.pushState(null, "", url);
    else history.replaceState(null, "", url);
    syncControls();
    load();
  }

  function windowOf() {
    if (state.from && state.to) return { from: new Date(state.from), to: new Date(state.to) };
    const to = new Date();
    return { from: new Date(to.getTime() - RANGES[state.range] * 60000), to };
  }

  // --- formatting -----------------------------------------------------------------------------

  const iso = (d) => d.toISOString().replace(/\.\d{3}Z$/, "Z");
  const plotTime = (text) => text.replace("T", " ").replace(/(\.\d+)?Z$/, "");
  const fromPlot = (text) => new Date(String(text).replace(" ", "T") + (String(text).length <= 10 ? "T00:00:00Z" : "Z"));
  const hhmm = (text) => text.slice(11, 16);
  const localInput = (d) => d.toISOString().slice(0, 16);
  const int = (n) => (n == null ? "—" : Math.round(n).toLocaleString("en-US"));
  function pct(x) {
    if (x == null) return "—";
    const p = x * 100;
    return (p === 0 ? "0" : p < 10 ? p.toFixed(2) : p.toFixed(1)) + "%";
  }
  function ms(x) {
    if (x == null) return "—";
    if (x >= 1000) return (x / 1000).toFixed(x >= 10000 ? 1 : 2) + " s";
    return (x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0)) + " ms";
  }
  function stepText(seconds) {
    if (seconds % 86400 === 0) return `${seconds / 86400}-day`;
    if (seconds % 3600 === 0) return `${seconds / 3600}-hour`;
    return `${seconds / 60}-min`;
  }
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

  // --- the data API ---------------------------------------------------------------------------

  async function api(name, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== "" && v != null) q.set(k, v);
    let response;
    try {
      response = await fetch(`/api/v1/${name}?${q}`, {
        credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store",
      });
    } catch (err) {
      throw Object.assign(new Error("the dashboard server did not answer"), { status: 0 });
    }
    let body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    if (!response.ok) {
      const message = (body && body.error) || `HTTP ${response.status}`;
      throw Object.assign(new Error(message), { status: response.status, hint: body && body.hint });
    }
    return body;
  }

  function filters(w) {
    return {
      from: iso(w.from), to: iso(w.to), service: state.service,
      path: state.path, method: state.path ? state.method : "",
    };
  }

  // --- loading ----------------------------------------------------------------------------------

  async function load() {
    const gen = ++generation;
    clearTimeout(timer);
    document.body.dataset.state = "loading";
    setLoading(true);
    const w = windowOf();
    const f = filters(w);
    try {
      const seriesParams = { ...f, apdex_t_ms: state.apdex, compare: state.compare };
      const [services, series, heat, endpoints, events] = await Promise.all([
        api("services"),
        api("series", seriesParams),
        api("heatmap", f),
        api("endpoints", { ...f, sort: state.sort, order: state.order, limit: 10 }),
        api("events", { from: f.from, to: f.to, service: state.service }),
      ]);
      const fetched = performance.now();
      if (gen !== generation) return;
      $("unreachable").hidden = true;
      // the numbers and tables show at once; only the charts wait for plotly.js
      const withCharts = render(services, series, endpoints, events);
      let plotted = fetched;
      if (withCharts) {
        await plotlyReady;
        plotted = performance.now();
        if (gen !== generation) return;
        charts(series, heat, events.rows);
        document.body.dataset.state = "ready";
      }
      $("updated").textContent = new Date().toISOString().slice(11, 19) + " UTC";
      window.gravixTimings = { fetched, plotlyReady: plotted, rendered: performance.now() };
    } catch (err) {
      if (gen !== generation) return;
      if (err.status === 401) { location.reload(); return; }
      failed(err);
    } finally {
      if (gen === generation) {
        setLoading(false);
        document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);
        timer = setTimeout(load, REFRESH_MS);
      }
    }
  }

  function setLoading(on) {
    for (const panel of document.querySelectorAll(".panel")) panel.classList.toggle("loading", on);
  }

  function failed(err) {
    const detail = $("unreachable-detail");
    const banner = $("unreachable");
    if (err.status === 0 || err.status >= 500) {
      banner.querySelector("b").textContent = "Cannot reach the data service.";
      detail.textContent = `${err.message}${err.hint ? " — " + err.hint : ""}. Retrying every 60 s.`;
    } else {
      banner.querySelector("b").textContent = "The data service refused these filters.";
      detail.textContent = err.message + (err.hint ? " — " + err.hint : "");
    }
    banner.hidden = false;
    document.body.dataset.state = "error";
  }

  // Everything but the charts; true when the charts are to be drawn.
  function render(services, series, endpoints, events) {
    fillServices(services.services);
    const empty = !services.services.length && !services.data_through;
    $("firstrun").hidden = !empty;
    stale(series.data_through || services.data_through);
    if (empty) {
      $("content").hidden = true;
      $("nodata").hidden = true;
      $("crumbs").innerHTML = "";
      $("curl").textContent = curlExample();
      document.body.dataset.state = "firstrun";
      return false;
    }
    crumbs(series);
    const none = !series.summary.requests;
    $("nodata").hidden = !none;
    $("content").hidden = none;
    if (none) {
      document.body.dataset.state = "nodata";
      return false;
    }
    kpis(series);
    endpointTable(endpoints);
    eventTable(events.rows);
    return true;
  }

  function fillServices(names) {
    const select = $("service");
    const wanted = [...names];
    if (state.service && !wanted.includes(state.service)) wanted.push(state.service);
    if (wanted.join("\n") !== knownServices.join("\n")) {
      select.innerHTML = '<option value="">All services</option>' +
        wanted.map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join("");
      knownServices = wanted;
    }
    select.value = state.service;
  }

  function stale(through) {
    const old = through && Date.now() - new Date(through).getTime() > STALE_MS;
    $("stale").hidden = !old;
    $("stale-tag").hidden = !old;
    if (old) {
      const minutes = Math.round((Date.now() - new Date(through).getTime()) / 60000);
      const age = minutes >= 2880 ? `${Math.round(minutes / 1440)} days` :
        minutes >= 120 ? `${Math.round(minutes / 60)} hours` : `${minutes} minutes`;
      $("stale-detail").textContent =
        `The newest data is from ${through.replace("T", " ").replace("Z", " UTC")} (${age} ago). ` +
        "Is `gravix rollup` running on its schedule?";
    }
  }

  function curlExample() {
    const url = document.body.dataset.ingestUrl || "http://127.0.0.1:8090";
    return [
      "# 1. start an ingest server with a key",
      "export API_KEY=$(openssl rand -hex 16)",
      "gravix ingest-server &",
      "# 2. send one fact",
      `curl -X POST ${url}/api/v1/facts \\`,
      '  -H "X-API-Key: $API_KEY" -H "Content-Type: application/json" \\',
      `  -d '{"event_id": "0190b2d4-5a6e-7c3e-9f1a-2b3c4d5e6f70", "event_time": "${iso(new Date())}",`,
      '       "service": "checkout", "method": "POST", "path_template": "/api/orders",',
      '       "status_code": 201, "latency_ms": 42.5}\'',
      "# 3. after the server rotates its buffer (60 s), roll up",
      "gravix rollup",
    ].join("\n");
  }

  // --- breadcrumb and KPIs ------------------------------------------------------------------

  function crumbs(series) {
    const parts = [`<a href="#" data-crumb="all">All services</a>`];
    if (state.service) {
      parts.push('<span class="sep">›</span>');
      parts.push(state.path ? `<a href="#" data-crumb="service">${esc(state.service)}</a>`
        : `<span class="here">${esc(state.service)}</span>`);
    }
    if (state.path) {
      parts.push('<span class="sep">›</span>');
      parts.push(`<span class="here"><span class="method">${esc(state.method)}</span>${esc(state.path)}</span>`);
    }
    if (state.service || state.path) parts.push('<button type="button" id="back">← Back</button>');
    const span = `${plotTime(series.from).slice(0, 16)} – ${plotTime(series.to).slice(0, 16)} UTC`;
    parts.push(`<span class="window">${span} · ${stepText(series.step_seconds)} steps</span>`);
    $("crumbs").innerHTML = parts.join(" ");
  }

  function kpis(series) {
    const s = series.summary;
    const minutes = (new Date(series.to) - new Date(series.from)) / 60000;
    const tiles = [
      ["Requests", int(s.requests), `${(s.requests / minutes).toFixed(1)} per minute`, false],
      ["5xx error rate", pct(s.error_rate), `${int(s.errors)} server errors`, s.error_rate > 0.01],
      ["4xx rate", pct(s.client_error_rate), `${int(s.client_errors)} client errors`, false],
      ["p95 latency", ms(s.p95_ms), `p50 ${ms(s.p50_ms)} · ±${(series.error_bound * 100).toFixed(2)}%`, false],
      ["p99 latency", ms(s.p99_ms), `merged, ±${(series.error_bound * 100).toFixed(2)}%`, false],
      ["Apdex", s.apdex == null ? "—" : s.apdex.toFixed(3), `T = ${series.apdex_t_ms} ms`, s.apdex != null && s.apdex < 0.85],
    ];
    $("kpis").innerHTML = tiles.map(([label, value, sub, bad]) =>
      `<div class="card kpi${bad ? " bad" : ""}"><div class="label">${label}</div>` +
      `<div class="value">${value}</div><div class="sub">${sub}</div></div>`).join("");
  }

  // --- charts -----------------------------------------------------------------------------------

  const PLOT_CONFIG = {
    displaylogo: false, responsive: true, doubleClick: false, displayModeBar: "hover", showTips: false,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "resetScale2d", "pan2d",
      "zoomIn2d", "zoomOut2d", "toggleSpikelines", "hoverClosestCartesian", "hoverCompareCartesian"],
  };

  // read once: reading a computed style after the DOM changed makes the browser redo the
  // page's styles, once per chart otherwise
  let fontFamily = null;

  function layout(series, events, extra) {
    fontFamily = fontFamily || getComputedStyle(document.body).fontFamily;
    return {
      // fixed margins, wide enough for every axis label and a one-row legend: margins that
      // grow to fit would draw each chart twice
      height: 250, margin: { l: 72, r: 14, t: 40, b: 34, autoexpand: false },
      font: { family: fontFamily, size: 11, color: C.text },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      xaxis: {
        type: "date", range: [plotTime(series.from), plotTime(series.to)],
        gridcolor: C.grid, linecolor: C.line, showspikes: false,
      },
      // y labels sit inside the fixed left margin: none is measured to see if it overflows
      // (a layout pass per label)
      yaxis: {
        gridcolor: C.grid, zeroline: false, rangemode: "tozero", fixedrange: true, automargin: false,
        ticklabeloverflow: "allow",
      },
      yaxis2: { overlaying: "y", range: [0, 1], visible: false, fixedrange: true },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 11 } },
      hovermode: "x unified", dragmode: "zoom", showlegend: true,
      shapes: events.map((e) => ({
        type: "line", xref: "x", yref: "paper", x0: plotTime(e.event_time), x1: plotTime(e.event_time),
        y0: 0, y1: 1, line: { color: isDeploy(e) ? C.violet : C.grey, width: 1.5, dash: isDeploy(e) ? "solid" : "dot" },
      })),
      ...extra,
    };
  }

  const isDeploy = (e) => e.event_type.startsWith("deploy");

  function markers(events) {
    return {
      x: events.map((e) => plotTime(e.event_time)), y: events.map(() => 0.97), yaxis: "y2",
      type: "scatter", mode: "markers", name: "events", showlegend: false,
      marker: { symbol: "triangle-down", size: 11, color: events.map((e) => (isDeploy(e) ? C.violet : C.grey)) },
      text: events.map((e) => `${e.event_type} ${e.service}${e.entity_id ? " " + e.entity_id : ""}`),
      hovertemplate: "%{text}<extra></extra>",
    };
  }

  function line(points, key, name, color, extra) {
    return {
      x: points.map((p) => plotTime(p.t)), y: points.map((p) => (p[key] == null ? null : p[key])),
      type: "scatter", mode: "lines", name, line: { color, width: 2 }, connectgaps: false, ...extra,
    };
  }

  // counts per step as stacked steps: each step's count holds over [t, t + step), as a bar
  // would, drawn as one shape per series instead of one per step
  function stacked(points, key, name, color) {
    return line(points, key, name, color, {
      line: { color, width: 0, shape: "hv" }, stackgroup: "counts", fillcolor: color,
      hovertemplate: `${name} %{y}<extra></extra>`,
    });
  }

  function previous(series, key, name, scale) {
    if (!series.previous) return [];
    const label = series.compare === "7d" ? "previous week" : "previous day";
    const pts = series.previous.map((p) => ({ ...p, v: p[key] == null ? null : p[key] * (scale || 1) }));
    return [line(pts, "v", `${name} (${label})`, C.grey, { line: { color: C.grey, width: 1.5, dash: "dash" } })];
  }

  function draw(name, traces, lay) {
    const div = $(`chart-${name}`);
    Plotly.react(div, traces, lay, PLOT_CONFIG);
    if (!div.dataset.bound) {
      div.dataset.bound = "1";
      div.on("plotly_relayout", (ev) => {
        const a = ev["xaxis.range[0]"] ?? (ev["xaxis.range"] || [])[0];
        const b = ev["xaxis.range[1]"] ?? (ev["xaxis.range"] || [])[1];
        if (a != null && b != null) zoomTo(fromPlot(a), fromPlot(b));
      });
    }
  }

  function charts(series, heat, events) {
    // a step the warehouse does not cover yet is unknown, not zero: no line drops to 0 at "now"
    const through = series.data_through;
    const pts = series.points.map((p) => (!through || p.t < through ? p : { t: p.t }));
    const perMinute = 60 / series.step_seconds;
    const step = stepText(series.step_seconds);
    const mark = events.length ? [markers(events)] : [];
    const pctPoints = pts.map((p) => ({
      ...p, e: p.error_rate == null ? null : p.error_rate * 100,
      c: p.client_error_rate == null ? null : p.client_error_rate * 100,
      rpm: p.requests == null ? null : p.requests * perMinute,
    }));
    const rateHover = (label) => `${label} %{y:.2f}% (%{customdata[0]} of %{customdata[1]})<extra></extra>`;
    draw("errors", [
      line(pctPoints, "e", "5xx rate", C.red, { customdata: pts.map((p) => [p.errors, p.requests]), hovertemplate: rateHover("5xx") }),
      line(pctPoints, "c", "4xx rate", C.orange, { customdata: pts.map((p) => [p.client_errors, p.requests]), hovertemplate: rateHover("4xx") }),
      ...previous(series, "error_rate", "5xx rate", 100),
      ...mark,
    ], layout(series, events, { yaxis: { ...layout(series, []).yaxis, ticksuffix: "%" } }));
    $("panel-counts").querySelector("small").textContent = `5xx and 4xx responses per ${step} step`;
    draw("counts", [
      stacked(pts, "errors", "5xx", C.red),
      stacked(pts, "client_errors", "4xx", C.orange),
      ...mark,
    ], layout(series, events, {}));
    const bound = series.error_bound;
    const latencyHover = (label) => `${label} %{y:.1f} ms ±%{customdata:.1f}<extra></extra>`;
    const lat = (key, label, color) => line(pts, key, label, color, {
      customdata: pts.map((p) => (p[key] == null ? null : p[key] * bound)), hovertemplate: latencyHover(label),
    });
    $("latency-note").textContent = `p50 / p95 / p99 merged from histograms, each within ±${(bound * 100).toFixed(2)}%`;
    draw("latency", [
      lat("p50_ms", "p50", C.blue), lat("p95_ms", "p95", C.violet), lat("p99_ms", "p99", C.pink),
      ...previous(series, "p95_ms", "p95"),
      ...mark,
    ], layout(series, events, { yaxis: { ...layout(series, []).yaxis, ticksuffix: " ms" } }));
    draw("requests", [
      line(pctPoints, "rpm", "requests / min", C.blue, {
        fill: "tozeroy", fillcolor: "rgba(28,126,214,0.08)",
        customdata: pts.map((p) => p.requests),
        hovertemplate: "%{y:.1f}/min (%{customdata} in the step)<extra></extra>",
      }),
      ...previous(series, "requests", "requests / min", perMinute),
      ...mark,
    ], layout(series, events, {}));
    heatmap(series, heat, events, mark);
    $("apdex-note").textContent = `T = ${series.apdex_t_ms} ms, tolerating up to ${4 * series.apdex_t_ms} ms`;
    draw("apdex", [
      line(pts, "apdex", "Apdex", C.green, { hovertemplate: "Apdex %{y:.3f}<extra></extra>" }),
      ...previous(series, "apdex", "Apdex"),
      ...mark,
    ], layout(series, events, { yaxis: { ...layout(series, []).yaxis, range: [0, 1.02], rangemode: "normal" } }));
  }

  function heatmap(series, heat, events, mark) {
    const bounds = heat.bucket_bounds_ms;
    const rows = Math.max(bounds.length - 1, 0);
    let first = 0;
    let last = rows - 1;
    const used = (k) => heat.points.some((p) => p.counts[k]);
    while (first < last && !used(first)) first++;
    while (last > first && !used(last)) last--;
    const labels = [];
    const z = [];
    const counts = [];
    for (let k = first; k <= last; k++) {
      labels.push(k === 0 ? "0 ms" : `≤ ${ms(bounds[k + 1])}`);
      z.push(heat.points.map((p) => (p.counts[k] ? Math.log10(p.counts[k]) : null)));
      counts.push(heat.points.map((p) => p.counts[k] || 0));
    }
    const trace = {
      type: "heatmap", x: heat.points.map((p) => plotTime(p.t)), y: labels, z, customdata: counts,
      colorscale: [[0, "#dbe4ff"], [0.45, "#748ffc"], [0.75, "#7048e8"], [1, "#c2255c"]],
      // one pixel per cell, scaled up crisp: a tenth of the time of drawing each cell
      showscale: false, hoverongaps: false, zsmooth: "fast", name: "requests",
      hovertemplate: "%{y}: %{customdata} requests<extra></extra>",
    };
    const lay = layout(series, events, {
      showlegend: false, hovermode: "closest",
      yaxis: { type: "category", fixedrange: true, automargin: false, nticks: 8, gridcolor: C.grid },
    });
    draw("heatmap", rows ? [trace, ...mark] : [...mark], lay);
  }

  function zoomTo(a, b) {
    if (!(a < b) || isNaN(a) || isNaN(b)) return;
    const from = new Date(Math.floor(a.getTime() / 60000) * 60000);
    let to = new Date(Math.ceil(b.getTime() / 60000) * 60000);
    if (to - from < 2 * 60000) to = new Date(from.getTime() + 2 * 60000);
    state.from = iso(from);
    state.to = iso(to);
    state.range = "";
    commit(true);
  }

  // --- tables ---------------------------------------------------------------------------------

  const COLUMNS = [
    ["path_template", "Endpoint", false], ["service", "Service", false],
    ["requests", "Requests", true], ["errors", "5xx errors", true], ["error_rate", "Error rate", true],
    ["client_errors", "4xx", true], ["p95_ms", "p95", true],
  ];

  function endpointTable(answer) {
    const order = state.order || (TEXT_SORTS.includes(state.sort) ? "asc" : "desc");
    $("endpoints").querySelector("thead").innerHTML = "<tr>" + COLUMNS.map(([key, label, num]) => {
      const arrow = key === state.sort ? `<span class="arrow">${order === "asc" ? "▲" : "▼"}</span>` : "";
      return `<th class="sortable${num ? " num" : ""}" data-sort="${key}" title="Sort by ${label}">${label}${arrow}</th>`;
    }).join("") + "</tr>";
    const rows = answer.rows.map((r) => {
      const badge = r.error_rate > 0.01 ? "badge red" : "badge";
      return `<tr><td><a href="#" data-service="${esc(r.service)}" data-method="${esc(r.method)}" ` +
        `data-path="${esc(r.path_template)}"><span class="method">${esc(r.method)}</span>${esc(r.path_template)}</a></td>` +
        `<td>${esc(r.service)}</td><td class="num">${int(r.requests)}</td><td class="num">${int(r.errors)}</td>` +
        `<td class="num"><span class="${badge}">${pct(r.error_rate)}</span></td>` +
        `<td class="num">${int(r.client_errors)}</td><td class="num">${ms(r.p95_ms)}</td></tr>`;
    });
    $("endpoints").querySelector("tbody").innerHTML = rows.join("") ||
      '<tr><td class="none" colspan="7">No requests in this window.</td></tr>';
  }

  function eventTable(rows) {
    const counts = {};
    for (const e of rows) counts[e.event_type] = (counts[e.event_type] || 0) + 1;
    $("event-counts").innerHTML = Object.entries(counts).map(([type, n]) =>
      `<span class="badge${type.startsWith("deploy") ? " deploy" : ""}">${esc(type)} × ${n}</span>`).join("");
    const shown = [...rows].reverse().slice(0, 100);
    $("events").querySelector("tbody").innerHTML = shown.map((e) =>
      `<tr><td title="${esc(e.event_time)}">${esc(plotTime(e.event_time).slice(5, 19))}</td><td>${esc(e.service)}</td>` +
      `<td><span class="badge${isDeploy(e) ? " deploy" : ""}">${esc(e.event_type)}</span></td>` +
      `<td>${esc(e.entity_id || "")}</td><td class="wrap">${esc(e.message || "")}</td></tr>`).join("") ||
      '<tr><td class="none" colspan="5">No service events in this window.</td></tr>';
  }

  // --- controls -------------------------------------------------------------------------------

  function syncControls() {
    $("service").value = state.service;
    $("compare").value = state.compare;
    $("apdex").value = state.apdex;
    for (const b of document.querySelectorAll("#presets button")) {
      b.classList.toggle("active", b.dataset.range === state.range);
    }
    const w = windowOf();
    $("from").value = localInput(w.from);
    $("to").value = localInput(w.to);
  }

  function bind() {
    $("service").addEventListener("change", (ev) => {
      state.service = ev.target.value; state.path = ""; state.method = ""; commit(true);
    });
    $("compare").addEventListener("change", (ev) => { state.compare = ev.target.value; commit(true); });
    $("apdex").addEventListener("change", (ev) => {
      const t = Number(ev.target.value);
      if (t > 0 && t <= 3600000) { state.apdex = String(t); commit(true); }
    });
    $("presets").addEventListener("click", (ev) => {
      const range = ev.target.dataset && ev.target.dataset.range;
      if (!range) return;
      state.range = range; state.from = ""; state.to = ""; commit(true);
    });
    $("custom").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const from = new Date($("from").value + ":00Z");
      const to = new Date($("to").value + ":00Z");
      if (isNaN(from) || isNaN(to) || !(from < to)) {
        failed({ status: 400, message: "pick a start before the end" });
        return;
      }
      state.from = iso(from); state.to = iso(to); state.range = ""; commit(true);
    });
    $("refresh").addEventListener("click", () => load());
    $("retry").addEventListener("click", () => load());
    $("reset").addEventListener("click", () => { state = { ...DEFAULTS }; commit(true); });
    $("crumbs").addEventListener("click", (ev) => {
      const target = ev.target.closest("[data-crumb], #back");
      if (!target) return;
      ev.preventDefault();
      if (target.id === "back") {
        if (state.path) { state.path = ""; state.method = ""; } else state.service = "";
      } else if (target.dataset.crumb === "all") {
        state.service = ""; state.path = ""; state.method = "";
      } else { state.path = ""; state.method = ""; }
      commit(true);
    });
    $("endpoints").addEventListener("click", (ev) => {
      const th = ev.target.closest("th[data-sort]");
      if (th) {
        const key = th.dataset.sort;
        const natural = TEXT_SORTS.includes(key) ? "asc" : "desc";
        const current = state.order || (TEXT_SORTS.includes(state.sort) ? "asc" : "desc");
        state.order = key === state.sort ? (current === "asc" ? "desc" : "asc") : natural;
        if (state.order === natural) state.order = "";
        state.sort = key;
        commit(false);
        return;
      }
      const link = ev.target.closest("a[data-path]");
      if (!link) return;
      ev.preventDefault();
      state.service = link.dataset.service; state.method = link.dataset.method;
      state.path = link.dataset.path; commit(true);
    });
    window.addEventListener("popstate", () => { state = readState(); syncControls(); load(); });
  }

  function start() {
    $("logout").hidden = document.body.dataset.auth !== "1";
    bind();
    syncControls();
    load();
  }

  start();
})();
