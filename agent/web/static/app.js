// Neubot agent UI. Plain JavaScript, no build step: it talks to the agent's
// JSON API (agent/API.md) on the same origin and draws charts with uPlot when
// scripts/setup installed it (static/vendor/). Every POST and PUT carries the
// CSRF token that the agent put in <meta name="neubot-csrf">.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const csrfToken = document.querySelector('meta[name="neubot-csrf"]')?.content ?? "";

  const POLL_RUNNING_MS = 500; // while a test runs: live progress
  const POLL_IDLE_MS = 5000;
  const RESULTS_REFRESH_MS = 60000; // results also change when uploads complete
  const TABLE_ROWS = 20;
  const CHART_HEIGHT = 220;

  // Phases of a test (agent/API.md), in order: where each starts and ends on
  // the progress bar (percent), and what to tell the volunteer.
  const PHASES = {
    rendezvous: [0, 5, "Finding a test server"],
    negotiate: [5, 10, "Waiting for the test server"],
    latency: [10, 20, "Measuring latency"],
    download: [20, 55, "Measuring download speed"],
    upload: [55, 90, "Measuring upload speed"],
    collect: [90, 97, "Sending the result to the test server"],
    store: [97, 100, "Saving the result"],
  };
  // The longest transfer phase, in seconds (MaxPhase of agent/speedtest):
  // the bar moves through download and upload at this pace.
  const PHASE_SECONDS = 3.4;

  // Chart colours: each has at least 4.5:1 contrast on white, and upload is
  // also dashed, so the two lines differ by more than colour.
  const COLORS = { download: "#0b5cad", upload: "#a34700", latency: "#6a3d9a", axis: "#2b2f36", grid: "#e2e5ea" };

  const state = {
    status: null,
    reconsidering: false, // the volunteer asked to see the consent screen again
    appLoaded: false, // results, usage and config fetched once after consent
    wasRunning: false,
    lastErrorBefore: "",
    pollTimer: 0,
    pollSeq: 0,
    resultsTimer: 0,
    charts: {},
    chartsAvailable: typeof window.uPlot === "function",
  };

  // ---- API ----------------------------------------------------------------

  class APIError extends Error {
    constructor(status, body) {
      super((body && body.error) || `the agent answered ${status}`);
      this.status = status;
      this.field = (body && body.field) || "";
    }
  }

  async function api(method, path, body) {
    const init = { method, headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" };
    if (method !== "GET") {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-Neubot-CSRF"] = csrfToken;
      init.body = JSON.stringify(body ?? {});
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch {
      throw new APIError(0, { error: "Cannot reach the Neubot agent: is it running?" });
    }
    let data = null;
    try {
      data = await resp.json();
    } catch {
      data = null;
    }
    if (resp.status === 403 && data && /CSRF/.test(data.error || "")) {
      // The token changes at every start of the agent.
      throw new APIError(403, { error: "The Neubot agent was restarted: reload this page to continue." });
    }
    if (!resp.ok) throw new APIError(resp.status, data);
    return data;
  }

  // ---- messages (aria-live) ------------------------------------------------

  function say(text, kind = "info") {
    const box = $("messages");
    const current = box.firstElementChild;
    if (current && current.textContent === text && current.dataset.kind === kind) return; // no repeats
    box.replaceChildren();
    if (!text) return;
    const p = document.createElement("p");
    p.className = `msg msg-${kind}`;
    p.dataset.kind = kind;
    p.textContent = text;
    box.append(p);
  }

  // tell puts feedback on the volunteer's last action next to the buttons
  // of the status card (a live region too).
  function tell(text, kind = "info") {
    const p = $("action-message");
    p.textContent = text;
    p.className = `action-message msg-${kind}`;
  }

  function clearConnectionError() {
    const current = $("messages").firstElementChild;
    if (current && current.dataset.kind === "offline") say("");
  }

  // ---- formatting ----------------------------------------------------------

  const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const shortDateTime = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const dayMonth = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
  const monthName = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "long", timeZone: "UTC" });
  const dayName = new Intl.DateTimeFormat(undefined, { weekday: "short", month: "short", day: "numeric", timeZone: "UTC" });

  // fixed1 shows one decimal; none from 1000 up (37925 Mbit/s on loopback),
  // two significant digits below 1 (a latency of 0.031 ms must not read 0.0).
  const fixed1 = (v) => {
    if (typeof v !== "number" || !isFinite(v)) return "–";
    if (Math.abs(v) >= 1000) return v.toFixed(0);
    if (v !== 0 && Math.abs(v) < 1) return String(Number(v.toPrecision(2)));
    return v.toFixed(1);
  };
  const mb = (bytes) => (typeof bytes === "number" ? bytes / 1e6 : NaN);

  function fmtBytes(bytes) {
    if (typeof bytes !== "number" || !isFinite(bytes)) return "–";
    if (bytes === 0) return "0 MB";
    if (bytes >= 1e12) return `${(bytes / 1e12).toFixed(bytes >= 1e13 ? 0 : 1)} TB`;
    if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(bytes >= 1e10 ? 1 : 2)} GB`;
    return `${(bytes / 1e6).toFixed(bytes >= 1e8 ? 0 : 1)} MB`;
  }

  function fmtNext(iso) {
    const t = new Date(iso);
    if (isNaN(t)) return "–";
    const mins = Math.round((t - Date.now()) / 60000);
    if (mins <= 0) return `now (${timeOnly.format(t)})`;
    if (mins < 60) return `in ${mins} min, at ${timeOnly.format(t)}`;
    if (mins < 24 * 60) return `in ${Math.floor(mins / 60)} h ${mins % 60} min, at ${timeOnly.format(t)}`;
    return dateTime.format(t);
  }

  function phaseInfo(progress) {
    const [from, to, label] = PHASES[progress.phase] ?? [0, 0, progress.phase || "Running"];
    let pct = from;
    if (progress.phase === "download" || progress.phase === "upload") {
      pct += (to - from) * Math.min((progress.elapsed || 0) / PHASE_SECONDS, 1);
    }
    return { pct, label };
  }

  // ---- rendering: which screen ---------------------------------------------

  function showScreen(name) {
    $("loading").hidden = name !== "loading";
    $("consent").hidden = name !== "consent";
    $("declined").hidden = name !== "declined";
    $("app").hidden = name !== "app";
  }

  function focusHeading(id) {
    const h = $(id);
    h.tabIndex = -1;
    h.focus();
  }

  function applyStatus(st) {
    const prev = state.status;
    state.status = st;
    const consent = st.consent || {};
    $("ft-version").textContent = `Neubot agent ${st.version || ""}`.trim() + ".";
    const upd = st.update;
    $("update").hidden = !upd;
    if (upd) {
      $("update-latest").textContent = upd.latest;
      $("update-current").textContent = upd.current;
      $("update-file").textContent = upd.file;
    }
    $("privacy").hidden = !consent.decided;
    $("ft-publish").textContent = consent.decided && consent.can_collect
      ? (consent.can_publish ? "Your results are published as open data." : "Your results are not published.")
      : "";

    if (!consent.decided || state.reconsidering) {
      if (!prev || $("consent").hidden) $("can-publish").checked = publishDefault(consent);
      showScreen("consent");
      return;
    }
    if (!consent.can_collect) {
      showScreen("declined");
      return;
    }
    showScreen("app");
    renderStatus(st);
    if (!state.appLoaded) {
      state.appLoaded = true;
      loadConfig();
      refreshResults();
      refreshUsage();
      loadProviderComparison();
    }
    // A test just ended (one we started or a scheduled one): new numbers.
    if (state.wasRunning && !st.running) {
      refreshResults(true);
      refreshUsage();
    }
    if (!state.wasRunning && st.running) state.lastErrorBefore = st.last_error || "";
    state.wasRunning = !!st.running;
  }

  function renderStatus(st) {
    const used = st.data_used || {};
    let stateText = "Waiting for the next test";
    if (st.running) stateText = "Running a test";
    else if (used.cap_reached) stateText = "Monthly data cap reached: no tests until next month";
    else if (st.paused) stateText = "Paused: no scheduled tests";
    $("st-state").textContent = stateText;

    let next = "–";
    if (st.next_test) next = fmtNext(st.next_test);
    else if (st.paused) next = "none while paused";
    else if (used.cap_reached) next = "none until next month";
    $("st-next").textContent = next;

    $("st-error").textContent = st.last_error || "none";
    $("st-error").classList.toggle("error-text", !!st.last_error);
    $("st-pending").textContent = String(st.pending_uploads ?? 0);

    let data = fmtBytes(used.month_bytes ?? 0);
    if (used.monthly_cap_bytes > 0) data += ` of ${fmtBytes(used.monthly_cap_bytes)}`;
    data += ` (today ${fmtBytes(used.today_bytes ?? 0)})`;
    $("st-data").textContent = data;

    const run = $("run");
    run.setAttribute("aria-disabled", st.running ? "true" : "false");
    run.textContent = st.running ? "Test running…" : "Run a test now";
    $("pause").textContent = st.paused ? "Resume" : "Pause";

    renderProgress(st);
    renderPeers(st.peers || {});
  }

  function fmtCaps(c) {
    return `${c.max_tests} at once, ${c.max_mbps} Mbit/s, ${c.daily_mb} MB a day`;
  }

  function renderPeers(p) {
    const s = p.status;
    let serving = "No";
    if (p.error) serving = `No: ${p.error}`;
    else if (s) serving = `Yes, on ${s.listen}`;
    $("pr-state").textContent = serving;
    $("pr-state").classList.toggle("error-text", !!p.error);
    let listed = "–";
    if (s) listed = s.listed ? `Yes, at ${s.url}` : `No: ${s.reason || "not yet"}`;
    $("pr-listed").textContent = listed;
    $("pr-listed").classList.toggle("error-text", !!s && !s.listed && !!s.reason);
    $("pr-active").textContent = s ? `${s.active_tests} running, ${s.queued_tests} waiting` : "–";
    $("pr-today").textContent = s ? `${fmtBytes(s.today_bytes)} of ${fmtBytes(s.daily_bytes)}${s.cap_reached ? " (limit reached until 00:00 UTC)" : ""}` : "–";
    $("pr-caps").textContent = s ? fmtCaps(s.caps) : "–";
  }

  function renderProgress(st) {
    const phase = $("progress-phase");
    const details = $("progress-details");
    if (!st.running) {
      delete phase.dataset.phase;
      details.hidden = true;
      return;
    }
    const p = st.progress;
    if (!p) {
      setText(phase, "Starting the test…");
      delete phase.dataset.phase;
      details.hidden = true;
      return;
    }
    const { pct, label } = phaseInfo(p);
    let text = label;
    if (p.phase === "negotiate" && p.queue_pos > 0) text += `: ${p.queue_pos} ahead of you`;
    else if (p.message) text += `: ${p.message}`;
    setText(phase, text + "…");
    phase.dataset.phase = p.phase;
    details.hidden = false;
    $("progress-mbps").textContent = p.mbps > 0 ? fixed1(p.mbps) : "–";
    const bar = $("progress-bar");
    bar.value = Math.round(pct);
    bar.setAttribute("aria-valuetext", `${Math.round(pct)} percent, ${label}`);
  }

  // setText changes a live region only when its text changes, so that screen
  // readers announce each phase once.
  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  // ---- polling -------------------------------------------------------------

  async function poll() {
    clearTimeout(state.pollTimer);
    const seq = ++state.pollSeq;
    let st;
    try {
      st = await api("GET", "/api/v1/status");
    } catch (e) {
      if (seq !== state.pollSeq) return;
      if (!state.status) $("loading").textContent = `${e.message} Retrying…`;
      say(e.message, e.status === 0 ? "offline" : "error");
      state.pollTimer = setTimeout(poll, POLL_IDLE_MS);
      return;
    }
    if (seq !== state.pollSeq) return; // a newer poll started meanwhile
    clearConnectionError();
    applyStatus(st);
    state.pollTimer = setTimeout(poll, st.running ? POLL_RUNNING_MS : POLL_IDLE_MS);
  }

  // ---- history ---------------------------------------------------------------

  async function refreshResults(afterRun = false) {
    clearTimeout(state.resultsTimer);
    state.resultsTimer = setTimeout(refreshResults, RESULTS_REFRESH_MS);
    let results;
    try {
      results = (await api("GET", "/api/v1/results?limit=200")).results || [];
    } catch (e) {
      say(`Could not load the results: ${e.message}`, "error");
      return;
    }
    renderResults(results);
    if (afterRun) announceFinished(results);
  }

  function announceFinished(results) {
    const st = state.status || {};
    const phase = $("progress-phase");
    if (st.last_error && st.last_error !== state.lastErrorBefore) {
      setText(phase, `The test failed: ${st.last_error}`);
      return;
    }
    const r = results[0];
    if (!r) {
      setText(phase, "");
      return;
    }
    if (r.test !== "speedtest") {
      setText(phase, `Test finished: ${r.test}.`);
      return;
    }
    setText(phase, `Test finished: ${fixed1(r.download_mbps)} Mbit/s download, ${fixed1(r.upload_mbps)} Mbit/s upload, ${fixed1(r.rtt_ms)} ms latency.`);
  }

  function renderResults(results) {
    const empty = results.length === 0;
    $("history-empty").hidden = !empty;
    $("charts").hidden = empty;
    $("results").closest(".table-scroll").hidden = empty;

    const body = $("results-body");
    const rows = results.slice(0, TABLE_ROWS).map((r) => {
      const tr = document.createElement("tr");
      const when = document.createElement("th");
      when.scope = "row";
      const t = new Date(r.start_time);
      const time = document.createElement("time");
      time.dateTime = r.start_time;
      if (isNaN(t)) {
        time.textContent = r.start_time;
      } else {
        // Date and time: on a phone they go on two lines.
        const d = document.createElement("span");
        d.textContent = dayMonth.format(t);
        const h = document.createElement("span");
        h.textContent = timeOnly.format(t);
        time.append(d, " ", h);
      }
      when.append(time);
      if (r.peer) {
        const tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = "peer";
        tag.title = "Against another volunteer's agent";
        when.append(" ", tag);
      }
      tr.append(when);
      // Speeds and latency are the speedtest's; other tests show their data only.
      const speed = r.test === "speedtest";
      for (const [i, v] of [r.download_mbps, r.upload_mbps, r.rtt_ms, mb(r.bytes)].entries()) {
        const td = document.createElement("td");
        td.className = "num";
        td.textContent = speed || i === 3 ? fixed1(v) : "–";
        tr.append(td);
      }
      const sent = document.createElement("td");
      sent.textContent = r.uploaded ? "yes" : "not yet";
      tr.append(sent);
      return tr;
    });
    body.replaceChildren(...rows);
    $("results-caption").textContent = results.length > TABLE_ROWS
      ? `Latest ${TABLE_ROWS} results, newest first`
      : "Latest results, newest first";

    if (!empty) drawCharts(results);
  }

  // ---- charts (uPlot) --------------------------------------------------------

  function chartsUnavailable() {
    const box = $("charts");
    const p = document.createElement("p");
    p.className = "notice";
    p.id = "charts-missing";
    p.textContent = "chart library not installed: run scripts/setup";
    box.replaceChildren(p);
  }

  function drawCharts(results) {
    if (!state.chartsAvailable) return;
    const rows = results.filter((r) => r.test === "speedtest" && !isNaN(Date.parse(r.start_time))).reverse(); // oldest first
    const x = rows.map((r) => Date.parse(r.start_time) / 1000);
    const val = (v) => (typeof v === "number" && isFinite(v) ? v : null);
    const speed = [x, rows.map((r) => val(r.download_mbps)), rows.map((r) => val(r.upload_mbps))];
    const latency = [x, rows.map((r) => val(r.rtt_ms))];
    upsertChart("speed", $("chart-speed"), speed, "Mbit/s", [
      { label: "Download", stroke: COLORS.download, unit: "Mbit/s" },
      { label: "Upload", stroke: COLORS.upload, unit: "Mbit/s", dash: [6, 4] },
    ]);
    upsertChart("latency", $("chart-latency"), latency, "ms", [
      { label: "Latency", stroke: COLORS.latency, unit: "ms" },
    ]);
  }

  function upsertChart(key, el, data, unit, lines) {
    const existing = state.charts[key];
    if (existing) {
      existing.setData(data);
      return;
    }
    const axis = { stroke: COLORS.axis, grid: { stroke: COLORS.grid, width: 1 }, ticks: { stroke: COLORS.grid, width: 1 }, font: "12px system-ui, sans-serif" };
    const opts = {
      width: chartWidth(el),
      height: CHART_HEIGHT,
      scales: {
        x: { time: true, range: timeRange },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] },
      },
      series: [
        { label: "Time", value: (u, v) => (v == null ? "–" : shortDateTime.format(new Date(v * 1000))) },
        ...lines.map((l) => ({
          label: l.label,
          stroke: l.stroke,
          width: 2,
          dash: l.dash,
          spanGaps: true,
          points: { show: true, size: 6, stroke: l.stroke, fill: "#fff" },
          value: (u, v) => (v == null ? "–" : `${v.toFixed(1)} ${l.unit}`),
        })),
      ],
      axes: [{ ...axis }, { ...axis, label: unit, size: 56, labelSize: 18, labelFont: "12px system-ui, sans-serif" }],
      cursor: { drag: { x: false, y: false } },
      legend: { live: false },
    };
    state.charts[key] = new window.uPlot(opts, data, el);
  }

  // timeRange pads the time axis so that the first and last points are not
  // cut in half, and shows an hour either side of a single result (uPlot
  // would make one point span years).
  function timeRange(u, min, max) {
    const xs = u.data[0];
    if (!xs || xs.length === 0) return [min, max];
    const lo = xs[0];
    const hi = xs[xs.length - 1];
    if (hi === lo) return [lo - 3600, hi + 3600];
    const pad = Math.max((hi - lo) * 0.04, 30);
    return [lo - pad, hi + pad];
  }

  function chartWidth(el) {
    return Math.max(200, Math.floor(el.clientWidth || el.parentElement.clientWidth || 300));
  }

  function watchChartSizes() {
    if (!state.chartsAvailable || typeof ResizeObserver !== "function") return;
    let pending = 0;
    new ResizeObserver(() => {
      cancelAnimationFrame(pending);
      pending = requestAnimationFrame(() => {
        for (const [key, chart] of Object.entries(state.charts)) {
          const el = $(`chart-${key}`);
          const w = chartWidth(el);
          if (w !== chart.width) chart.setSize({ width: w, height: CHART_HEIGHT });
        }
      });
    }).observe($("charts"));
  }

  // ---- my results against my ISP -------------------------------------------

  // loadProviderComparison is where "My results against my ISP" gets filled
  // in once Neubot's public API (publish/: per-ISP distributions) is
  // reachable. It should fetch the distribution of the volunteer's provider
  // (through the agent, since the page may only connect to its own origin),
  // then draw the volunteer's results against it into #compare-body and hide
  // #compare-note. Until that API exists it leaves the note in place.
  async function loadProviderComparison() {
    const note = $("compare-note");
    const body = $("compare-body");
    let c;
    try {
      c = await api("GET", "/api/v1/isp");
    } catch (e) {
      note.textContent = `Comparison with your provider is not available: ${e.message}`;
      note.hidden = false;
      return;
    }
    if (!c.available) {
      note.textContent = `Comparison with your provider is not available: ${c.reason}.`;
      note.hidden = false;
      body.textContent = "";
      return;
    }
    note.hidden = true;
    const fmt = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
    const who = `${c.org || "your provider"} (AS${c.asn}${c.country ? ", " + c.country : ""})`;
    body.textContent = "";
    const p = document.createElement("p");
    p.textContent = `Over the last ${c.days} days, ${c.isp_tests} tests of ${who} measured a median download of ` +
      `${fmt(c.p50)} Mbit/s; half of them were between ${fmt(c.p25)} and ${fmt(c.p75)} Mbit/s ` +
      `(10% below ${fmt(c.p10)}, 10% above ${fmt(c.p90)}).`;
    body.appendChild(p);
    const mine = document.createElement("p");
    if (c.my_tests > 0) {
      let where = "in the middle half of your provider's tests";
      if (c.my_median < c.p25) where = "below the middle half of your provider's tests";
      if (c.my_median > c.p75) where = "above the middle half of your provider's tests";
      mine.textContent = `Your median download over your ${c.my_tests} tests is ${fmt(c.my_median)} Mbit/s: ${where}.`;
    } else {
      mine.textContent = "You have no tests in this period yet.";
    }
    body.appendChild(mine);
  }

  // ---- data used -----------------------------------------------------------

  async function refreshUsage() {
    let usage;
    try {
      usage = await api("GET", "/api/v1/usage");
    } catch (e) {
      say(`Could not load the data used: ${e.message}`, "error");
      return;
    }
    const days = (usage.days || []).filter((d) => d.bytes > 0).reverse();
    const months = (usage.months || []).slice().reverse();
    fillUsage($("months-body"), months, (m) => labelMonth(m.month), "No data used yet.");
    fillUsage($("days-body"), days, (d) => labelDay(d.day), "No tests in the last 31 days.");
  }

  function labelMonth(ym) {
    const t = new Date(`${ym}-01T00:00:00Z`);
    return isNaN(t) ? ym : monthName.format(t);
  }

  function labelDay(day) {
    const t = new Date(`${day}T00:00:00Z`);
    return isNaN(t) ? day : dayName.format(t);
  }

  // fillUsage lists rows with a bar each, the longest bar for the most data.
  function fillUsage(body, rows, label, emptyText) {
    const max = Math.max(1, ...rows.map((r) => r.bytes));
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 2;
      td.className = "empty";
      td.textContent = emptyText;
      tr.append(td);
      body.replaceChildren(tr);
      return;
    }
    body.replaceChildren(...rows.map((r) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = label(r);
      const td = document.createElement("td");
      const cell = document.createElement("div");
      cell.className = "with-bar";
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.className = "bar-fill";
      fill.style.width = `${Math.max(0.5, (100 * r.bytes) / max).toFixed(1)}%`;
      bar.append(fill);
      const n = document.createElement("span");
      n.className = "bar-value";
      n.textContent = fixed1(mb(r.bytes));
      cell.append(bar, n);
      td.append(cell);
      tr.append(th, td);
      return tr;
    }));
  }

  // ---- settings --------------------------------------------------------------

  // The fields of a settings form: the input, the element of its error, its
  // name in messages, the pattern its text must match and the hint when it
  // does not.
  const WHOLE = { pattern: /^\d+$/, hint: "Enter a whole number." };
  const FIELDS = {
    monthly_cap_mb: { input: "cap", error: "cap-error", name: "Monthly data cap", ...WHOLE },
    mean_interval_minutes: { input: "interval", error: "interval-error", name: "Mean time between tests", ...WHOLE },
  };

  async function loadConfig() {
    try {
      fillConfig(await api("GET", "/api/v1/config"));
    } catch (e) {
      say(`Could not load the settings: ${e.message}`, "error");
    }
  }

  function fillConfig(cfg) {
    $("cap").value = String(cfg.monthly_cap_mb ?? 0);
    $("interval").value = String(cfg.mean_interval_minutes ?? 120);
    const caps = cfg.peer_caps || {};
    $("serve-peers").checked = !!cfg.serve_peers;
    $("test-with-peers").checked = !!cfg.test_with_peers;
    $("cap-tests").value = String(caps.max_tests ?? 1);
    $("cap-mbps").value = String(caps.max_mbps ?? 10);
    $("cap-daily").value = String(caps.daily_mb ?? 500);
  }

  // ---- peer-to-peer ----------------------------------------------------------

  const CAPS = {
    max_tests: { input: "cap-tests", error: "cap-tests-error", name: "Tests at once", ...WHOLE },
    max_mbps: { input: "cap-mbps", error: "cap-mbps-error", name: "Bandwidth", pattern: /^\d+(\.\d+)?$/, hint: "Enter a number, e.g. 10 or 2.5." },
    daily_mb: { input: "cap-daily", error: "cap-daily-error", name: "Data a day", ...WHOLE },
  };

  function setFieldError(f, text) {
    $(f.error).textContent = text;
    if (text) $(f.input).setAttribute("aria-invalid", "true");
    else $(f.input).removeAttribute("aria-invalid");
  }

  // readForm checks each of fields against its pattern and returns their
  // numbers; or, when one is bad, marks the bad ones, focuses the first and
  // returns null.
  function readForm(fields, status) {
    const out = {};
    let firstBad = "";
    for (const [field, f] of Object.entries(fields)) {
      setFieldError(f, "");
      const raw = $(f.input).value.trim();
      if (!f.pattern.test(raw)) {
        setFieldError(f, f.hint);
        firstBad ||= field;
        continue;
      }
      out[field] = Number(raw);
    }
    if (firstBad) {
      $(fields[firstBad].input).focus();
      status.textContent = "Please correct the marked field.";
      return null;
    }
    return out;
  }

  // saveConfig puts body and says saved in status; when the agent refuses
  // one of fields (named prefix + field, e.g. "monthly_cap_mb: must be
  // between ..."), the reason goes beside that field. It reports success.
  async function saveConfig(body, fields, prefix, status, saved) {
    try {
      fillConfig(await api("PUT", "/api/v1/config", body));
      status.textContent = saved;
      poll();
      return true;
    } catch (e) {
      const f = fields[(e.field || "").replace(prefix, "")];
      if (e.status === 400 && f) {
        const reason = e.message.startsWith(`${e.field}: `) ? e.message.slice(e.field.length + 2) : e.message;
        setFieldError(f, `${f.name} ${reason}`);
        $(f.input).focus();
        status.textContent = "Not saved: please correct the marked field.";
      } else {
        status.textContent = `Not saved: ${e.message}`;
      }
      return false;
    }
  }

  async function savePeers(ev) {
    ev.preventDefault();
    const status = $("peers-status");
    status.textContent = "";
    const caps = readForm(CAPS, status);
    if (!caps) return;
    const body = { serve_peers: $("serve-peers").checked, test_with_peers: $("test-with-peers").checked, peer_caps: caps };
    await saveConfig(body, CAPS, "peer_caps.", status, "Peer-to-peer settings saved.");
  }

  async function saveSettings(ev) {
    ev.preventDefault();
    const status = $("settings-status");
    status.textContent = "";
    const body = readForm(FIELDS, status);
    if (body && (await saveConfig(body, FIELDS, "", status, "Settings saved."))) refreshUsage();
  }

  // ---- actions -------------------------------------------------------------

  async function runNow() {
    if (state.status && state.status.running) {
      tell("A test is already running.");
      return;
    }
    try {
      await api("POST", "/api/v1/run", {});
      tell("");
      setText($("progress-phase"), "Starting the test…");
      state.wasRunning = true;
      state.lastErrorBefore = (state.status && state.status.last_error) || "";
    } catch (e) {
      const why = {
        409: "A test is already running.",
        403: e.message === "consent required" ? "Neubot needs your consent before it measures." : e.message,
        429: "The monthly data cap is reached: raise it in Settings to run a test.",
      }[e.status];
      tell(why || `Could not start a test: ${e.message}`, "error");
    }
    poll();
  }

  async function togglePause() {
    const paused = !(state.status && state.status.paused);
    try {
      await api("PUT", "/api/v1/config", { paused });
      tell(paused ? "Paused: no scheduled tests until you resume." : "Resumed: tests run on schedule again.");
    } catch (e) {
      tell(`Could not ${paused ? "pause" : "resume"}: ${e.message}`, "error");
    }
    poll();
  }

  async function sendConsent(canCollect) {
    const body = { informed: true, can_collect: canCollect, can_publish: canCollect && $("can-publish").checked };
    try {
      await api("POST", "/api/v1/consent", body);
    } catch (e) {
      say(`Could not save your choice: ${e.message}`, "error");
      return;
    }
    say("");
    state.reconsidering = false;
    await poll();
    if (!$("app").hidden) focusHeading("status-title");
    else if (!$("declined").hidden) focusHeading("declined-title");
  }

  // publishDefault is the state of "Allow publishing" on the consent screen:
  // the volunteer's choice if they accepted before, else checked.
  function publishDefault(consent) {
    return consent.decided && consent.can_collect ? !!consent.can_publish : true;
  }

  function reconsider() {
    state.reconsidering = true;
    $("can-publish").checked = publishDefault(state.status?.consent || {});
    showScreen("consent");
    focusHeading("consent-title");
  }

  // ---- start ---------------------------------------------------------------

  function start() {
    $("consent-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sendConsent(true);
    });
    $("decline").addEventListener("click", () => sendConsent(false));
    $("reconsider").addEventListener("click", reconsider);
    $("privacy").addEventListener("click", reconsider);
    $("run").addEventListener("click", runNow);
    $("pause").addEventListener("click", togglePause);
    $("settings-form").addEventListener("submit", saveSettings);
    $("peers-form").addEventListener("submit", savePeers);
    if (state.chartsAvailable) watchChartSizes();
    else chartsUnavailable();
    poll();
  }

  start();
})();
