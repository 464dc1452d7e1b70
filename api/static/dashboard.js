// flashstock operations dashboard: polls /dashboard/data, keeps a few minutes of samples for rates and the chart.
(function () {
  "use strict";
  const body = document.body;
  const dataUrl = body.dataset.dataUrl, loginUrl = body.dataset.loginUrl, base = body.dataset.base;
  const refreshMs = Number(body.dataset.refreshMs) || 1500;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const HISTORY_MS = 5 * 60 * 1000, RATE_WINDOW_MS = 60 * 1000;
  const samples = [];  // {t, held, checkouts, rejections, sold: {sku: n}, available: {sku: n}}
  let chart = null, chartSkus = "";
  const $ = (id) => document.getElementById(id);

  function perMinute(pick) {
    if (samples.length < 2) return null;
    const last = samples[samples.length - 1];
    let first = samples[0];
    for (const s of samples) { if (last.t - s.t <= RATE_WINDOW_MS) { first = s; break; } }
    const a = pick(first), b = pick(last);
    if (first === last || a == null || b == null) return null;
    return Math.max(0, (b - a) * 60000 / (last.t - first.t));
  }
  const fmt = (v) => v == null ? "–" : (Math.round(v * 10) / 10).toString();
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB"]; let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + " " + units[i];
  }
  function secs(ms) {
    if (ms == null) return "–";
    const s = ms / 1000;
    return s < 120 ? s.toFixed(1) + " s" : s < 7200 ? (s / 60).toFixed(1) + " min" : (s / 3600).toFixed(1) + " h";
  }

  function flash(text, isError) { const f = $("flash"); f.textContent = text; f.className = isError ? "error" : ""; }

  async function post(path, question) {
    if (!window.confirm(question)) return;
    try {
      const response = await fetch(base.replace(/\/$/, "") + path, {method: "POST", credentials: "same-origin",
        headers: {"X-CSRF-Token": csrf, "Content-Type": "application/json"}, body: "{}"});
      const reply = await response.json();
      if (!response.ok) { flash(reply.error.code + ": " + reply.error.message, true); return; }
      flash(path + ": " + JSON.stringify(reply.data), false);
    } catch (e) { flash("request failed: " + e, true); }
    refresh();
  }

  function row(s, soldRate) {
    const tr = document.createElement("tr");
    tr.dataset.sku = s.sku;
    const window_ = (s.sale_starts_at || "open") + " → " + (s.sale_ends_at || "open");
    const expiry = s.soonest_expiry_ms == null ? "–" : secs(s.soonest_expiry_ms - latestNow);
    const cells = [["sku", s.sku], ["state", s.state], ["total", s.total], ["available", s.available],
      ["held", s.held], ["sold", s.sold], ["paid", s.paid == null ? "–" : s.paid],
      ["sell-through", (s.sell_through * 100).toFixed(1) + "%"], ["res-min", s.reservations_per_minute],
      ["sold-min", fmt(soldRate)], ["open-holds", s.open_holds], ["expiry", expiry], ["window", window_]];
    for (const [cls, value] of cells) {
      const td = document.createElement("td"); td.className = cls; td.textContent = value; tr.appendChild(td);
    }
    tr.querySelector(".state").classList.add(s.state);
    const td = document.createElement("td"), button = document.createElement("button");
    const pausing = s.state !== "paused";
    button.textContent = pausing ? "Pause" : "Resume";
    button.className = (pausing ? "pause danger" : "resume");
    button.dataset.sku = s.sku;
    button.disabled = s.state === "recovering";
    button.addEventListener("click", () => post("/skus/" + encodeURIComponent(s.sku) + (pausing ? "/pause" : "/resume"),
      (pausing ? "Pause " : "Resume ") + s.sku + "? " + (pausing ? "New holds stop at once; checkouts continue." : "Holds start again now.")));
    td.appendChild(button); tr.appendChild(td);
    return tr;
  }

  let latestNow = 0;
  function render(d) {
    latestNow = d.now_ms;
    const t = Date.now();
    const sold = {}, available = {};
    for (const s of d.skus) { sold[s.sku] = s.sold; available[s.sku] = s.available; }
    samples.push({t, held: d.counters.held, checkouts: d.counters.checkouts, rejections: d.counters.rejections, sold, available});
    while (samples.length && t - samples[0].t > HISTORY_MS) samples.shift();

    const g = $("global-state");
    g.textContent = d.paused_globally ? "PAUSED (everything)" : "running";
    g.className = "badge" + (d.paused_globally ? " paused" : "");
    $("rate-held").textContent = fmt(perMinute((s) => s.held));
    $("rate-checkouts").textContent = fmt(perMinute((s) => s.checkouts));
    for (const reason of Object.keys(d.counters.rejections)) {
      $("rej-" + reason).textContent = fmt(perMinute((s) => s.rejections[reason]));
    }
    $("outbox-depth").textContent = d.outbox.depth;
    $("outbox-age").textContent = secs(d.outbox.oldest_age_ms);
    $("database").textContent = d.database;
    const m = d.redis_memory;
    $("memory").textContent = bytes(m.used) + " (peak " + bytes(m.peak) + (m.max ? ", max " + bytes(m.max) : "") + ")";
    const r = d.last_reconcile;
    $("reconcile").textContent = r == null ? "none yet" :
      "run " + r.run_id + ", " + secs(d.now_ms - r.finished_ms) + " ago: " + r.skus_checked + " checked, " +
      r.skus_drifted + " drifted, " + r.skus_repaired + " repaired" +
      (r.drifts.length ? " (" + r.drifts.map((x) => x.sku + " " + x.kind).join(", ") + ")" : "");
    $("updated").textContent = "updated " + new Date(t).toLocaleTimeString();

    const tbody = document.querySelector("#skus tbody");
    tbody.replaceChildren(...d.skus.map((s) => row(s, perMinute((x) => x.sold[s.sku]))));
    drawChart(d.hot_skus);
  }

  function drawChart(hot) {
    if (typeof uPlot === "undefined") return;
    const xs = samples.map((s) => s.t / 1000);
    const data = [xs, ...hot.map((sku) => samples.map((s) => s.available[sku] ?? null))];
    const key = hot.join(",");
    if (chart && key === chartSkus) { chart.setData(data); return; }
    if (chart) chart.destroy();
    chartSkus = key;
    const colors = ["#c0392b", "#2874a6", "#1e8449", "#b9770e", "#7d3c98"];
    chart = new uPlot({width: Math.min(document.body.clientWidth - 20, 1100), height: 220,
      series: [{}, ...hot.map((sku, i) => ({label: sku, stroke: colors[i % colors.length], width: 2}))],
      axes: [{}, {label: "available"}]}, data, $("chart"));
  }

  async function refresh() {
    try {
      const response = await fetch(dataUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}});
      if (response.status === 401) { window.location.assign(loginUrl); return; }
      const reply = await response.json();
      if (!response.ok) { flash(reply.error.code + ": " + reply.error.message, true); return; }
      render(reply.data);
    } catch (e) { flash("refresh failed: " + e, true); }
  }

  $("pause-all").addEventListener("click", () => post("/sale/pause",
    "Pause EVERYTHING? No SKU takes new holds until you resume; checkouts and payments continue."));
  $("resume-all").addEventListener("click", () => post("/sale/resume", "Resume everything? Holds start again on every active SKU."));
  refresh();
  setInterval(refresh, refreshMs);
})();
