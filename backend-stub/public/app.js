/* The backend stub's dashboard: plain browser JavaScript, no build step, no CDN.
 * `/` lists the jobs (live over /v1/stream), `/jobs/{id}` shows one job (live over /v1/jobs/{id}/stream) with a
 * uPlot chart per metric. Text from jobs is only ever set through textContent.
 * For tests: window.__dashboard.points(name) is the number of x values in that metric's chart, and each chart card
 * carries data-metric and data-points. #app carries data-ready="job" (or "list") once the live data is shown, for
 * screenshots and crawlers that run scripts; the server already puts a job's summary into its page for those that
 * do not. */
/* global uPlot, window, document, location, history, fetch, EventSource, CSS, Node, requestAnimationFrame, setInterval */
"use strict";

(function () {
  const app = document.getElementById("app");
  const charts = new Map();
  const state = { jobs: new Map(), job: null, connected: false };
  window.__dashboard = {
    charts,
    points: (name) => (charts.get(name) ? charts.get(name).data[0].length : 0),
    get job() {
      return state.job;
    },
    get jobs() {
      return [...state.jobs.values()];
    },
  };

  // ---- small DOM helpers ----
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // The same units as the command line's (src/log/units.ts); this script has no build step to import it.
  function bytesText(n) {
    if (n < 1024) return `${n} B`;
    const units = ["KiB", "MiB", "GiB", "TiB"];
    let v = n / 1024;
    let u = 0;
    while (v >= 1024 && u < units.length - 1) {
      v /= 1024;
      u++;
    }
    return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
  }

  function age(iso) {
    if (!iso) return "never";
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
    return `${Math.floor(s / 86400)}d ago`;
  }

  function ageClass(iso, jobState) {
    if (!iso || jobState !== "RUNNING") return "age";
    const s = (Date.now() - Date.parse(iso)) / 1000;
    return s < 90 ? "age fresh" : s < 300 ? "age stale" : "age dead";
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    const s = Math.round(seconds);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }

  function time(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  function fmt(v) {
    if (typeof v !== "number") return String(v);
    if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5)) return v.toExponential(3);
    return String(Math.round(v * 10000) / 10000);
  }

  function badge(jobState) {
    return h("span", { class: `badge s-${jobState.toLowerCase()}`, "data-state": jobState, text: jobState });
  }

  function progressBar(job) {
    let frac = job.progress;
    if ((frac === null || frac === undefined) && job.epoch !== null && job.total_epochs)
      frac = job.epoch / job.total_epochs;
    if (job.state === "SUCCEEDED") frac = 1;
    const label =
      job.epoch !== null && job.epoch !== undefined
        ? `epoch ${job.epoch}${job.total_epochs ? ` / ${job.total_epochs}` : ""}`
        : "";
    return h(
      "div",
      { class: "progress" },
      h("div", { class: "bar" }, h("div", { class: "fill", style: `width:${Math.round((frac || 0) * 100)}%` })),
      h("span", { class: "plabel", text: label || (frac ? `${Math.round(frac * 100)}%` : "—") }),
    );
  }

  function header() {
    return h(
      "header",
      {},
      h(
        "a",
        { href: "/", class: "brand" },
        h("span", { class: "logo", text: "◆" }),
        " Astrago Trainer",
        h("span", { class: "sub", text: " backend stub" }),
      ),
      h("span", {
        class: `conn ${state.connected ? "on" : "off"}`,
        id: "conn",
        text: state.connected ? "live" : "connecting…",
      }),
    );
  }

  function setConnected(on) {
    state.connected = on;
    const el = document.getElementById("conn");
    if (el) {
      el.className = `conn ${on ? "on" : "off"}`;
      el.textContent = on ? "live" : "reconnecting…";
    }
  }

  // ---- job list ----
  function renderList() {
    app.setAttribute("data-ready", "list");
    const jobs = [...state.jobs.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    const rows = jobs.map((j) =>
      h(
        "tr",
        { "data-job-id": j.id, onclick: () => navigate(`/jobs/${encodeURIComponent(j.id)}`) },
        h(
          "td",
          {},
          h("a", { href: `/jobs/${encodeURIComponent(j.id)}`, class: "jobid", text: j.id }),
          j.name ? h("div", { class: "muted", text: j.name }) : null,
        ),
        h("td", {}, badge(j.state)),
        h("td", {}, progressBar(j)),
        h(
          "td",
          { class: ageClass(j.last_heartbeat_at, j.state), "data-age": j.last_heartbeat_at || "" },
          age(j.last_heartbeat_at),
        ),
        h(
          "td",
          {},
          h(
            "div",
            { class: "metrics" },
            Object.entries(j.latest_metrics || {})
              .slice(0, 4)
              .map(([k, v]) => h("span", { class: "metric" }, h("b", { text: k }), " ", fmt(v))),
          ),
        ),
        h("td", { class: "muted", text: new Date(j.created_at).toLocaleString() }),
      ),
    );
    const counts = {};
    for (const j of jobs) counts[j.state] = (counts[j.state] || 0) + 1;
    app.replaceChildren(
      header(),
      h(
        "section",
        { class: "card" },
        h(
          "div",
          { class: "card-head" },
          h("h1", { text: "Jobs" }),
          h(
            "div",
            { class: "counts" },
            Object.entries(counts).map(([s, n]) => h("span", { class: "count" }, badge(s), ` ${n}`)),
          ),
        ),
        jobs.length === 0
          ? h("p", { class: "empty", text: "No jobs yet. Create one with POST /v1/jobs, or run trainer-agent local." })
          : h(
              "table",
              { id: "jobs" },
              h(
                "thead",
                {},
                h(
                  "tr",
                  {},
                  ["Job", "State", "Progress", "Last heartbeat", "Latest metrics", "Created"].map((t) =>
                    h("th", { text: t }),
                  ),
                ),
              ),
              h("tbody", {}, rows),
            ),
      ),
    );
  }

  // Many jobs report many times a second: redraw the list at most once a frame.
  let listPending = false;
  function scheduleList() {
    if (listPending) return;
    listPending = true;
    requestAnimationFrame(() => {
      listPending = false;
      if (!state.job) renderList();
    });
  }

  // ---- one job ----
  const PALETTE = ["#60a5fa", "#f472b6", "#34d399", "#fbbf24", "#a78bfa", "#f87171", "#22d3ee", "#a3e635"];

  function renderJob() {
    const j = state.job;
    if (!j) return;
    app.setAttribute("data-ready", "job");
    for (const u of charts.values()) u.destroy();
    charts.clear();
    app.replaceChildren(
      header(),
      h(
        "section",
        { class: "card" },
        h(
          "div",
          { class: "card-head" },
          h(
            "div",
            {},
            h("a", { href: "/", class: "back", text: "← all jobs" }),
            h("h1", { id: "job-title" }, j.id, j.name ? h("span", { class: "muted", text: `  ${j.name}` }) : null),
          ),
          h("div", { id: "job-state" }, badge(j.state)),
        ),
        h("div", { id: "job-progress" }, progressBar(j)),
        h("dl", { class: "meta", id: "job-meta" }, metaItems(j)),
      ),
      h("section", { class: "card" }, h("h2", { text: "Metrics" }), h("div", { id: "charts", class: "charts" })),
      h(
        "div",
        { class: "cols" },
        h(
          "section",
          { class: "card grow" },
          h("h2", { text: "Timeline" }),
          h("ol", { id: "timeline", class: "timeline" }),
        ),
        doneCard(j),
      ),
    );
    drawCharts(j.metric_series);
    renderTimeline(j);
  }

  function metaItems(j) {
    const meta = [
      ["trace id", j.trace_id || "—"],
      ["created", new Date(j.created_at).toLocaleString()],
      ["heartbeats", String(j.heartbeat_count)],
      ["events", String(j.event_count)],
      ["attempt", j.attempt === null ? "—" : `${j.attempt} (restarts allowed: ${j.max_restarts})`],
      ["ETA", j.eta_seconds !== null && j.state === "RUNNING" ? duration(j.eta_seconds) : "—"],
    ];
    return [
      ...meta.map(([k, v]) => h("div", {}, h("dt", { text: k }), h("dd", { text: v }))),
      h(
        "div",
        {},
        h("dt", { text: "last heartbeat" }),
        h(
          "dd",
          { id: "job-age", class: ageClass(j.last_heartbeat_at, j.state), "data-age": j.last_heartbeat_at || "" },
          age(j.last_heartbeat_at),
        ),
      ),
    ];
  }

  function doneCard(j) {
    const nodes = j.node_done || [];
    const nodeList = nodes.length
      ? h(
          "ul",
          { class: "nodes" },
          nodes.map((n) =>
            h(
              "li",
              {},
              `node ${n.node_rank}: `,
              badge(n.status.toUpperCase()),
              ` exit ${n.exit_code}, ${duration(n.duration_seconds)}`,
            ),
          ),
        )
      : null;
    if (!j.done)
      return h(
        "section",
        { class: "card side", id: "done" },
        h("h2", { text: "Result" }),
        h("p", {
          class: "muted",
          text: nodes.length
            ? `Waiting for the other nodes (${nodes.length} of ${nodes[0].nnodes} done).`
            : "Not finished yet.",
        }),
        nodeList,
      );
    const d = j.done;
    return h(
      "section",
      { class: "card side", id: "done" },
      h("h2", { text: "Result" }),
      h(
        "dl",
        { class: "meta" },
        h("div", {}, h("dt", { text: "status" }), h("dd", {}, badge(j.state))),
        h("div", {}, h("dt", { text: "exit code" }), h("dd", { text: String(d.exit_code) })),
        h("div", {}, h("dt", { text: "duration" }), h("dd", { text: duration(d.duration_seconds) })),
        d.reason ? h("div", {}, h("dt", { text: "reason" }), h("dd", { text: d.reason })) : null,
      ),
      d.final_metrics && Object.keys(d.final_metrics).length
        ? h(
            "p",
            { class: "metrics" },
            Object.entries(d.final_metrics).map(([k, v]) =>
              h("span", { class: "metric" }, h("b", { text: k }), " ", fmt(v)),
            ),
          )
        : null,
      d.checkpoints && d.checkpoints.length
        ? h(
            "ul",
            { class: "ckpts" },
            d.checkpoints.map((c) => h("li", {}, h("code", { text: c.key }), ` ${bytesText(c.bytes)}`)),
          )
        : null,
      nodeList,
      d.log_tail ? h("pre", { class: "logtail", text: d.log_tail }) : null,
    );
  }

  function timelineItems(j) {
    const items = [];
    for (const t of j.transitions) {
      // A note on attempts (the state stays): "attempt 0 failed: <reason>", "attempt 1 started".
      if (t.from === t.to) {
        const cut = t.cause.indexOf(": ");
        items.push({
          at: t.at,
          kind: /failed/.test(t.cause) ? "error" : "attempt",
          title: cut === -1 ? t.cause : t.cause.slice(0, cut),
          detail: cut === -1 ? "" : t.cause.slice(cut + 2),
        });
        continue;
      }
      items.push({
        at: t.at,
        kind: "state",
        title: t.from ? `${t.from} → ${t.to}` : "job created",
        detail: t.from ? t.cause : t.cause === "created" ? "through the API" : "by its first callback",
      });
    }
    for (const e of j.events)
      items.push({
        at: e.received_at,
        kind: e.type === "error" ? "error" : e.type === "warning" ? "warning" : "event",
        title: e.attempt ? `${e.type} (attempt ${e.attempt})` : e.type,
        detail: e.message || "",
      });
    const nodes = j.node_done || [];
    for (const d of nodes)
      items.push({
        at: d.received_at,
        kind: d.status === "succeeded" ? "ok" : "error",
        title: `node ${d.node_rank} done: ${d.status}`,
        detail: d.reason || `exit code ${d.exit_code}`,
      });
    if (j.done && nodes.length === 0)
      items.push({
        at: j.done.received_at,
        kind: j.done.status === "succeeded" ? "ok" : "error",
        title: `done: ${j.done.status}`,
        detail: j.done.reason || `exit code ${j.done.exit_code}`,
      });
    items.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
    return items;
  }

  function renderTimeline(j) {
    const ol = document.getElementById("timeline");
    if (!ol) return;
    ol.replaceChildren(
      ...timelineItems(j).map((it) =>
        h(
          "li",
          { class: `tl ${it.kind}` },
          h("time", { text: time(it.at) }),
          h("span", { class: "tl-title", text: it.title }),
          it.detail ? h("span", { class: "tl-detail", text: it.detail }) : null,
        ),
      ),
    );
  }

  function chartWidth(el) {
    return Math.max(260, Math.floor(el.getBoundingClientRect().width) - 24);
  }

  function drawCharts(ms) {
    const box = document.getElementById("charts");
    if (!box || typeof uPlot === "undefined") return;
    const names = Object.keys(ms.series);
    if (names.length === 0) {
      if (!box.querySelector(".empty"))
        box.replaceChildren(
          h("p", { class: "empty", text: "No metrics reported yet: charts appear with the first epoch report." }),
        );
      return;
    }
    box.querySelector(".empty")?.remove();
    names.forEach((name, i) => {
      const data = [ms.x, ms.series[name]];
      let u = charts.get(name);
      let card = box.querySelector(`[data-metric="${CSS.escape(name)}"]`);
      if (!card) {
        card = h(
          "div",
          { class: "chart", "data-metric": name },
          h("div", { class: "chart-title" }, h("span", { text: name }), h("span", { class: "last" })),
        );
        box.append(card);
      }
      const last = [...ms.series[name]].reverse().find((v) => v !== null);
      card.querySelector(".last").textContent = last === undefined ? "" : fmt(last);
      if (!u) {
        const color = PALETTE[i % PALETTE.length];
        const axis = {
          stroke: "#94a3b8",
          grid: { stroke: "#1e293b", width: 1 },
          ticks: { stroke: "#334155", width: 1 },
        };
        u = new uPlot(
          {
            width: chartWidth(card),
            height: 220,
            scales: { x: { time: false } },
            legend: { show: false },
            cursor: { points: { size: 8 } },
            series: [
              { label: ms.x_label },
              {
                label: name,
                stroke: color,
                width: 2,
                fill: color + "22",
                spanGaps: true,
                points: { show: true, size: 6, fill: color },
              },
            ],
            axes: [
              { ...axis, label: ms.x_label, labelSize: 18, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] },
              { ...axis, size: 56 },
            ],
          },
          data,
          card,
        );
        charts.set(name, u);
      } else {
        u.setData(data);
      }
      card.setAttribute("data-points", String(ms.x.length));
    });
  }

  function applyUpdate(update) {
    const j = state.job;
    if (!j) return;
    Object.assign(j, update.job);
    if (update.heartbeat) j.heartbeats.push(update.heartbeat);
    if (update.event) j.events.push(update.event);
    const transitions = update.transitions || (update.transition ? [update.transition] : []);
    for (const t of transitions) j.transitions.push(t);
    if (update.node_done) j.node_done = [...(j.node_done || []), update.node_done];
    if (update.done) j.done = update.done;
    if (update.metric_series) {
      j.metric_series = update.metric_series;
      drawCharts(j.metric_series);
    }
    document.getElementById("job-state")?.replaceChildren(badge(j.state));
    document.getElementById("job-progress")?.replaceChildren(progressBar(j));
    document.getElementById("job-meta")?.replaceChildren(...metaItems(j));
    if (update.event || transitions.length > 0 || update.done || update.node_done) renderTimeline(j);
    if (update.done || update.node_done) document.getElementById("done")?.replaceWith(doneCard(j));
    tick();
  }

  // ---- live streams ----
  let source = null;
  function connect(url, onSnapshot, onEvent, eventName) {
    if (source) source.close();
    source = new EventSource(url);
    source.addEventListener("open", () => setConnected(true));
    source.addEventListener("error", () => setConnected(false));
    source.addEventListener("snapshot", (e) => {
      setConnected(true);
      onSnapshot(JSON.parse(e.data));
    });
    source.addEventListener(eventName, (e) => onEvent(JSON.parse(e.data)));
  }

  function tick() {
    const job = state.job;
    for (const el of document.querySelectorAll("[data-age]")) {
      const iso = el.getAttribute("data-age");
      el.textContent = age(iso);
      const st = job
        ? job.state
        : el.closest("tr")
          ? (state.jobs.get(el.closest("tr").getAttribute("data-job-id")) || {}).state
          : "";
      el.className = ageClass(iso, st);
    }
  }
  setInterval(tick, 1000);

  window.addEventListener("resize", () => {
    for (const [name, u] of charts) {
      const card = document.querySelector(`[data-metric="${CSS.escape(name)}"]`);
      if (card) u.setSize({ width: chartWidth(card), height: 220 });
    }
  });

  function navigate(path) {
    history.pushState(null, "", path);
    route();
  }
  window.addEventListener("popstate", route);

  function route() {
    const m = /^\/jobs\/([^/]+)\/?$/.exec(location.pathname);
    if (m) {
      const id = decodeURIComponent(m[1]);
      state.job = null;
      document.title = `${id} · Astrago Trainer`;
      // The server put the job's summary into the first page: keep it on screen until the live view is ready.
      if (app.getAttribute("data-rendered") === "server") app.removeAttribute("data-rendered");
      else app.replaceChildren(header(), h("p", { class: "empty", text: `Loading job ${id}…` }));
      app.removeAttribute("data-ready");
      // Ask once before streaming: EventSource would retry a 404 forever.
      fetch(`/v1/jobs/${encodeURIComponent(id)}`).then((r) => {
        if (r.status === 404) {
          app.replaceChildren(
            header(),
            h(
              "section",
              { class: "card" },
              h("h1", { text: "No such job" }),
              h("p", { text: id }),
              h("a", { href: "/", text: "← all jobs" }),
            ),
          );
          return;
        }
        connect(
          `/v1/jobs/${encodeURIComponent(id)}/stream`,
          (job) => {
            state.job = job;
            renderJob();
          },
          applyUpdate,
          "update",
        );
      });
    } else {
      state.job = null;
      document.title = "Jobs · Astrago Trainer";
      connect(
        "/v1/stream",
        (snap) => {
          state.jobs = new Map(snap.jobs.map((j) => [j.id, j]));
          renderList();
        },
        (job) => {
          state.jobs.set(job.id, job);
          scheduleList();
        },
        "job",
      );
    }
  }
  route();
})();
