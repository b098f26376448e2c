// The herd page: polls /api/herd every second and draws it. Read-only:
// nothing here can trade. The admin token, when the gateway has one, comes
// from the URL fragment (#token=...) and is kept in sessionStorage.
"use strict";
(function () {
  const POLL_MS = 1000;
  const STALE_MS = 3000;
  const SVG = "http://www.w3.org/2000/svg";
  let lastOk = 0;
  let everOk = false;

  function token() {
    const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem("herd-token", decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname);
    }
    return sessionStorage.getItem("herd-token");
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function num(v) {
    const td = el("td", v, "num");
    const n = Number(v);
    if (n > 0) td.classList.add("pos");
    if (n < 0) td.classList.add("neg");
    return td;
  }

  function rows(tbody, items, build) {
    tbody.replaceChildren(...items.map(build));
  }

  function ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    return s < 120 ? `${s} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
  }

  function utc(ms) {
    return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
  }

  function renderEngines(d) {
    rows(document.querySelector("#engines tbody"), d.engines, (e) => {
      const tr = el("tr");
      tr.dataset.engine = e.id;
      tr.append(el("td", e.id), el("td", e.connected ? "connected" : "gone", e.connected ? "up" : "down"),
        el("td", e.mode), el("td", String(e.weight), "num"), el("td", String(e.open_orders), "num"),
        el("td", String(e.fills_today), "num"), num(e.pnl_today), num(e.pnl_total),
        el("td", String(e.venue_grants), "num"),
        el("td", e.last_event_ms ? ago(d.now_ms - e.last_event_ms) : "-"));
      const link = el("td");
      if (e.dashboard) {
        const a = el("a", "engine page");
        a.href = e.dashboard;
        link.append(a);
      }
      tr.append(link);
      return tr;
    });
    const h = document.getElementById("herd-pnl");
    h.textContent = d.pnl.total;
  }

  function renderBudget(d) {
    const b = d.budget;
    rows(document.querySelector("#budget tbody"), b.counters, (c) => {
      const tr = el("tr");
      const frac = Number(c.limit) > 0 ? Math.min(1, Number(c.level) / Number(c.limit)) : 0;
      const bar = el("span", "", "bar");
      bar.style.width = Math.round(frac * 120) + "px";
      const barCell = el("td");
      barCell.append(bar);
      tr.append(el("td", c.name), el("td", c.level, "num"), el("td", c.limit, "num"), barCell);
      return tr;
    });
    const q = b.queue_waiting, v = b.venue_waiting;
    document.getElementById("waiting").textContent =
      `waiting in the fair queue: ${q.cancels} cancels, ${q.places} places, ${q.queries} queries; ` +
      `for venue budget: ${v.cancels} cancels, ${v.places} places, ${v.queries} queries` +
      (b.locked_until_ms > 0 ? `; locked out until ${utc(b.locked_until_ms)}` : "");
    document.getElementById("grants").textContent =
      "grants: " + b.grants.map((g) => `${g.id} ${g.grants}`).join(", ");
  }

  function renderChart(d) {
    const svg = document.getElementById("chart");
    const series = Object.entries(d.equity.engines).map(([id, pts], i) => ({ id, pts, cls: "s" + (i % 5) }));
    if (d.equity.herd.length) series.push({ id: "herd", pts: d.equity.herd, cls: "herd" });
    const all = series.flatMap((s) => s.pts);
    svg.replaceChildren();
    const legend = document.getElementById("legend");
    legend.replaceChildren(...series.map((s) => el("span", "\u25a0 " + s.id, s.cls)));
    if (!all.length) {
      const t = document.createElementNS(SVG, "text");
      t.setAttribute("x", "20"); t.setAttribute("y", "130");
      t.textContent = "no fills yet";
      svg.append(t);
      return;
    }
    const W = 800, H = 260, P = 20;
    const ts = all.map((p) => p[0]), vs = all.map((p) => Number(p[1])).concat([0]);
    let t0 = Math.min(...ts), t1 = Math.max(...ts);
    if (t1 === t0) t1 = t0 + 1;
    let v0 = Math.min(...vs), v1 = Math.max(...vs);
    if (v1 === v0) { v1 += 1; v0 -= 1; }
    const x = (t) => P + (W - 2 * P) * (t - t0) / (t1 - t0);
    const y = (v) => H - P - (H - 2 * P) * (v - v0) / (v1 - v0);
    const zero = document.createElementNS(SVG, "line");
    zero.setAttribute("class", "zero");
    zero.setAttribute("x1", String(P)); zero.setAttribute("x2", String(W - P));
    zero.setAttribute("y1", String(y(0))); zero.setAttribute("y2", String(y(0)));
    svg.append(zero);
    for (const label of [[v1, P + 10], [v0, H - P + 14]]) {
      const t = document.createElementNS(SVG, "text");
      t.setAttribute("x", "2"); t.setAttribute("y", String(label[1] - 6));
      t.textContent = label[0].toFixed(2);
      svg.append(t);
    }
    for (const s of series) {
      const g = document.createElementNS(SVG, "g");
      g.setAttribute("class", s.cls);
      g.dataset.series = s.id;
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("class", s.cls);
      line.setAttribute("points", s.pts.map((p) => `${x(p[0]).toFixed(1)},${y(Number(p[1])).toFixed(1)}`).join(" "));
      g.append(line);
      for (const p of s.pts) {
        const c = document.createElementNS(SVG, "circle");
        c.setAttribute("cx", x(p[0]).toFixed(1));
        c.setAttribute("cy", y(Number(p[1])).toFixed(1));
        c.setAttribute("r", "2.5");
        c.setAttribute("class", "point");
        const title = document.createElementNS(SVG, "title");
        title.textContent = `${s.id} ${utc(p[0])} ${p[1]}`;
        c.append(title);
        g.append(c);
      }
      svg.append(g);
    }
  }

  function renderFills(d) {
    rows(document.querySelector("#fills tbody"), d.recent_fills.slice(0, 20), (f) => {
      const tr = el("tr");
      tr.append(el("td", utc(f.time_ms)), el("td", f.engine_id), el("td", f.strategy || "-"),
        el("td", f.symbol), el("td", f.side), el("td", f.price, "num"), el("td", f.volume, "num"),
        el("td", `${f.fee} ${f.fee_asset}`, "num"));
      return tr;
    });
  }

  function renderEvents(d) {
    rows(document.querySelector("#events tbody"), d.recent_events || [], (e) => {
      const tr = el("tr");
      tr.dataset.kind = e.kind;
      tr.dataset.severity = e.severity;
      tr.append(el("td", utc(e.time_ms)), el("td", e.severity, "sev-" + e.severity),
        el("td", e.source), el("td", e.kind), el("td", e.message));
      return tr;
    });
  }

  function stale() {
    const banner = document.getElementById("stale");
    const age = Date.now() - lastOk;
    const show = everOk && age > STALE_MS;
    banner.hidden = !show;
    document.body.classList.toggle("stale", show);
    if (show) document.getElementById("stale-age").textContent = `last answer ${Math.round(age / 1000)} s ago`;
  }

  async function poll() {
    const headers = {};
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    try {
      const r = await fetch("/api/herd", { headers, cache: "no-store" });
      if (r.status === 401 || r.status === 403) {
        document.getElementById("auth").hidden = false;
        return;
      }
      if (!r.ok) return;
      const d = await r.json();
      document.getElementById("auth").hidden = true;
      lastOk = Date.now();
      everOk = true;
      document.getElementById("venue").textContent = `${d.venue} · incarnation ${d.incarnation}`;
      document.getElementById("updated").textContent = "updated " + utc(d.now_ms);
      renderEngines(d);
      renderBudget(d);
      renderChart(d);
      renderFills(d);
      renderEvents(d);
    } catch (e) {
      // The gateway is not answering: the stale banner says so.
    } finally {
      stale();
    }
  }

  poll();
  setInterval(poll, POLL_MS);
}());
