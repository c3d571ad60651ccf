// speak-encoder dashboard: vanilla JS, no build step. Every value from the node is rendered
// with textContent (never as HTML markup); the page is driven by Server-Sent Events (/api/events).
"use strict";

(function () {
  const TOKEN_KEY = "speak-encoder-dashboard-token";
  const LOG_KEEP = 500;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const STAGE_ORDER = ["fetch", "probe", "plan", "encode", "verify", "publish", "report"];
  let canAct = false;
  let stream = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
    seconds = Math.max(0, Math.round(seconds));
    const d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (d) return d + "d " + h + "h " + m + "m";
    if (h) return h + "h " + m + "m " + s + "s";
    if (m) return m + "m " + s + "s";
    return s + "s";
  }

  function fmtTime(epoch) {
    if (!epoch) return "—";
    return new Date(epoch * 1000).toLocaleString();
  }

  function jobLabel(job) {
    const cell = el("td");
    cell.appendChild(el("code", String(job.id).slice(0, 8)));
    cell.title = job.id;
    return cell;
  }

  function sourceCell(job) {
    const cell = el("td");
    if (job.owner || job.permlink) {
      cell.appendChild(el("div", (job.owner || "?") + "/" + (job.permlink || "?"), "permlink"));
    }
    cell.appendChild(el("div", job.source, "source"));
    cell.appendChild(el("small", job.kind));
    return cell;
  }

  // --- actions --------------------------------------------------------------------------------

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  async function act(name, jobId) {
    const msg = $("action-msg");
    msg.textContent = name + " " + jobId.slice(0, 8) + "…";
    const headers = {};
    const t = token();
    if (t) headers["Authorization"] = "Bearer " + t;
    try {
      const res = await fetch("/api/jobs/" + encodeURIComponent(jobId) + "/" + name, {
        method: "POST", headers: headers, credentials: "omit", cache: "no-store",
      });
      const body = await res.json().catch(() => ({}));
      if (res.ok) {
        msg.textContent = name + " of " + jobId.slice(0, 8) + ": done (" + body.job.state + ")";
        msg.dataset.result = "ok";
      } else {
        msg.textContent = name + " refused (" + res.status + "): " + (body.error || res.statusText);
        msg.dataset.result = "refused";
      }
    } catch (e) {
      msg.textContent = name + " failed: " + e;
      msg.dataset.result = "error";
    }
  }

  // pending pins / given-up outbox reports: retried by the operator (token needed)
  async function retryQueue(what) {
    const msg = $("action-msg");
    msg.textContent = "retry " + what + "…";
    const headers = {};
    const t = token();
    if (t) headers["Authorization"] = "Bearer " + t;
    try {
      const res = await fetch("/api/" + what + "/retry", {
        method: "POST", headers: headers, credentials: "omit", cache: "no-store",
      });
      const body = await res.json().catch(() => ({}));
      if (res.ok) {
        msg.textContent = what === "pins"
          ? "pins retried: " + body.attempted + " attempted, " + body.done + " pinned, " +
            body.failed + " still pending, " + body.expired + " given up"
          : "outbox: " + body.rearmed + " given-up report(s) queued again";
        msg.dataset.result = "ok";
      } else {
        msg.textContent = "retry " + what + " refused (" + res.status + "): " + (body.error || res.statusText);
        msg.dataset.result = "refused";
      }
    } catch (e) {
      msg.textContent = "retry " + what + " failed: " + e;
      msg.dataset.result = "error";
    }
  }

  function setQueueButtons() {
    for (const id of ["retry-pins", "retry-outbox"]) {
      const button = $(id);
      button.disabled = !canAct;
      button.title = canAct ? "" : "read-only: no DASHBOARD_TOKEN configured on the node";
    }
  }

  function actionButton(name, job) {
    const button = el("button", name, "act-" + name);
    button.type = "button";
    button.dataset.job = job.id;
    if (!canAct) {
      button.disabled = true;
      button.title = "read-only: no DASHBOARD_TOKEN configured on the node";
    }
    button.addEventListener("click", () => act(name, job.id));
    return button;
  }

  // --- player ---------------------------------------------------------------------------------

  let hls = null;

  function play(job) {
    const cid = job.result && job.result.cid;
    if (!cid || !/^[A-Za-z0-9]+$/.test(cid)) return;
    const video = $("player");
    const url = "/store/" + encodeURIComponent(cid) + "/manifest.m3u8";
    $("player-box").hidden = false;
    $("player-title").textContent = cid;
    video.dataset.cid = cid;
    if (job.poster) video.poster = job.poster; else video.removeAttribute("poster");
    video.dataset.fragments = "0";
    video.dataset.error = "";
    if (hls) { hls.destroy(); hls = null; }
    if (window.Hls && window.Hls.isSupported()) {
      hls = new window.Hls({ enableWorker: false });
      video.hlsPlayer = hls;  // level switching from the browser tests
      video.dataset.levelsPlayed = "";
      hls.on(window.Hls.Events.MANIFEST_PARSED, (event, data) => {
        video.dataset.levels = String((data && data.levels && data.levels.length) || 0);
      });
      hls.on(window.Hls.Events.FRAG_LOADED, (event, data) => {
        video.dataset.fragments = String(Number(video.dataset.fragments || "0") + 1);
        const level = data && data.frag ? String(data.frag.level) : "";
        const played = video.dataset.levelsPlayed ? video.dataset.levelsPlayed.split(",") : [];
        if (level && !played.includes(level)) {
          played.push(level);
          video.dataset.levelsPlayed = played.join(",");
        }
      });
      hls.on(window.Hls.Events.ERROR, (event, data) => {
        if (data && data.fatal) video.dataset.error = String(data.details || data.type);
      });
      hls.loadSource(url);
      hls.attachMedia(video);
      video.dataset.engine = "hls.js";
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;
      video.dataset.engine = "native";
    } else {
      video.dataset.error = "this browser cannot play HLS";
      return;
    }
    video.play().catch(() => {});
  }

  function playButton(job) {
    const button = el("button", "play", "act-play");
    button.type = "button";
    button.dataset.job = job.id;
    button.addEventListener("click", () => play(job));
    return button;
  }

  // --- rendering ------------------------------------------------------------------------------

  function renderNode(node, data) {
    $("node-name").textContent = node.name;
    $("node-did").textContent = node.did || "— (no identity configured)";
    $("node-version").textContent = node.version;
    const update = $("node-update");
    update.hidden = !node.update_available;
    update.textContent = node.update_available
      ? "update available" + (node.latest_version ? ": " + node.latest_version : "") : "";
    $("node-uptime").textContent = fmtDuration(Date.now() / 1000 - node.started_at);
    const sources = Object.keys(node.sources).filter((k) => node.sources[k]);
    $("node-sources").textContent = sources.join(", ");
    renderIpfs(node.ipfs);
    $("node-source-health").replaceChildren(...(node.source_health || []).map((src) => {
      let text = src.name + ": " + src.health;
      if (src.registered !== null && src.registered !== undefined) {
        text += src.registered ? ", registered" : ", not registered";
      }
      if (src.last_ok_at) text += ", last ok " + fmtTime(src.last_ok_at);
      if (src.last_error) text += ", last error: " + src.last_error;
      const item = el("li", text, "health-" + String(src.health).split(" ")[0]);
      item.dataset.source = src.name;
      return item;
    }));
    $("node-paused").textContent = node.paused.length ? "paused: " + node.paused.join("; ") : "accepting";
    $("node-counts").textContent = Object.keys(data.counts).sort()
      .map((k) => k + " " + data.counts[k]).join(" · ") || "none";
    const outbox = Object.keys(data.outbox).sort().map((k) => k + " " + data.outbox[k]).join(" · ");
    const pins = data.pins ? "pins pending " + data.pins.pending + ", expired " + data.pins.expired : "pins —";
    $("node-outbox").textContent = "outbox " + (outbox || "empty") + " · " + pins;
    canAct = !!node.can_act;
    setQueueButtons();
    $("token-note").textContent = canAct
      ? "Retry and cancel need the operator token (kept in this tab's sessionStorage only)."
      : "Read-only: no DASHBOARD_TOKEN is configured on this node, every action is refused.";
  }

  function renderIpfs(ipfs) {
    const box = $("node-ipfs");
    if (!ipfs) { box.textContent = "—"; return; }
    let text;
    if (!ipfs.configured) text = "not configured";
    else if (ipfs.ok === true) text = "ok, peer " + ipfs.peer_id;
    else if (ipfs.ok === false) text = "unreachable: " + (ipfs.error || "?");
    else text = "checking…";
    if (ipfs.checked_at) text += " (checked " + fmtTime(ipfs.checked_at) + ")";
    box.textContent = text;
    box.dataset.ok = String(ipfs.ok);
  }

  function fill(tableId, rows) {
    const body = $(tableId).tBodies[0];
    body.replaceChildren(...rows);
    if (!rows.length) {
      const tr = el("tr");
      const td = el("td", "none", "empty");
      td.colSpan = $(tableId).tHead.rows[0].cells.length;
      tr.appendChild(td);
      body.appendChild(tr);
    }
  }

  function stageBars(item) {
    const box = el("div");
    const names = STAGE_ORDER.filter((s) => s in item.fractions || s === item.stage);
    for (const name of names) {
      const row = el("div", null, "stage" + (name === item.stage ? " current" : ""));
      row.dataset.stage = name;
      row.appendChild(el("span", name));
      const bar = el("progress");
      bar.max = 1;
      bar.value = Number(item.fractions[name] || 0);
      row.appendChild(bar);
      row.appendChild(el("span", Math.round(bar.value * 100) + "%"));
      box.appendChild(row);
    }
    if (item.detail) box.appendChild(el("small", item.detail));
    return box;
  }

  function renderActive(active) {
    fill("active", active.map((item) => {
      const tr = el("tr");
      tr.dataset.job = item.job.id;
      tr.appendChild(jobLabel(item.job));
      tr.appendChild(sourceCell(item.job));
      tr.appendChild(el("td", item.stage));
      const td = el("td");
      td.appendChild(stageBars(item));
      tr.appendChild(td);
      tr.appendChild(el("td", item.speed || "—"));
      tr.appendChild(el("td", fmtDuration(item.eta_seconds)));
      const actions = el("td");
      actions.appendChild(actionButton("cancel", item.job));
      tr.appendChild(actions);
      return tr;
    }));
  }

  function renderJobs(tableId, jobs, kind) {
    fill(tableId, jobs.map((job) => {
      const tr = el("tr");
      tr.dataset.job = job.id;
      tr.appendChild(jobLabel(job));
      tr.appendChild(sourceCell(job));
      tr.appendChild(el("td", job.state + (job.attempts ? " (attempt " + job.attempts + ")" : "")));
      tr.appendChild(el("td", fmtTime(kind === "queue" ? job.created_at : job.finished_at)));
      if (kind === "failed") {
        tr.appendChild(el("td", (job.error_kind ? job.error_kind + ": " : "") + (job.error || ""), "err"));
      } else if (kind === "recent") {
        const cell = el("td", (job.result && job.result.cid) || job.error || "—", job.error ? "err" : "");
        if (job.poster) {
          const img = document.createElement("img");
          img.className = "poster";
          img.src = job.poster;
          img.alt = "poster";
          img.title = job.result.thumbnail || "";
          cell.prepend(img);
        }
        tr.appendChild(cell);
      } else {
        tr.appendChild(el("td", job.next_attempt_at ? "retry at " + fmtTime(job.next_attempt_at) : (job.error || ""), "err"));
      }
      const actions = el("td");
      if (kind === "queue") actions.appendChild(actionButton("cancel", job));
      if (job.state === "failed" || job.state === "cancelled") actions.appendChild(actionButton("retry", job));
      if (job.playable) actions.appendChild(playButton(job));
      tr.appendChild(actions);
      return tr;
    }));
  }

  function polyline(points, cls) {
    const line = document.createElementNS(SVG_NS, "polyline");
    line.setAttribute("class", cls);
    line.setAttribute("points", points.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" "));
    return line;
  }

  function svgText(x, y, text) {
    const t = document.createElementNS(SVG_NS, "text");
    t.setAttribute("x", String(x));
    t.setAttribute("y", String(y));
    t.textContent = text;
    return t;
  }

  function renderChart(rows) {
    const svg = $("chart");
    const W = 600, H = 160, P = 14;
    const parts = [];
    if (rows.length >= 1) {
      const t0 = rows[0][0], t1 = Math.max(rows[rows.length - 1][0], t0 + 1);
      const memMax = Math.max(1, ...rows.map((r) => Math.max(r[1], r[2])));
      const diskMax = Math.max(1, ...rows.map((r) => r[3]));
      const x = (t) => P + ((t - t0) / (t1 - t0)) * (W - 2 * P);
      const y = (v, max) => H - P - (v / max) * (H - 2 * P);
      parts.push(polyline(rows.map((r) => [x(r[0]), y(r[1], memMax)]), "enc"));
      parts.push(polyline(rows.map((r) => [x(r[0]), y(r[2], memMax)]), "ff"));
      parts.push(polyline(rows.map((r) => [x(r[0]), y(r[3], diskMax)]), "disk"));
      parts.push(svgText(2, 10, "max " + Math.round(memMax) + " MB RSS"));
      parts.push(svgText(W - 130, 10, "disk max " + Math.round(diskMax) + " MB"));
      parts.push(svgText(2, H - 2, fmtDuration(t1 - t0) + " shown"));
      const last = rows[rows.length - 1];
      $("chart-now").textContent = "now: encoder " + last[1] + " MB, ffmpeg " + last[2] + " MB, disk free " + last[3] + " MB";
    } else {
      parts.push(svgText(P, H / 2, "no samples yet"));
    }
    svg.replaceChildren(...parts);
  }

  function appendLogs(entries) {
    const pre = $("log");
    const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    for (const e of entries) {
      const line = el("div", new Date(e.ts * 1000).toISOString().slice(11, 19) + " " + e.level + " " + e.logger + ": " + e.msg, "lv-" + e.level);
      line.dataset.seq = String(e.seq);
      pre.appendChild(line);
    }
    while (pre.childElementCount > LOG_KEEP) pre.firstElementChild.remove();
    if (stick) pre.scrollTop = pre.scrollHeight;
  }

  function render(data) {
    renderNode(data.node, data);
    renderActive(data.active);
    renderJobs("queue", data.queue.concat(data.elsewhere || []), "queue");
    renderJobs("failed", data.failed, "failed");
    renderJobs("recent", data.recent, "recent");
    renderChart(data.memory);
    appendLogs(data.logs);
    document.body.dataset.updated = String(Date.now());
  }

  function setConn(state, text) {
    const conn = $("conn");
    conn.className = "conn conn-" + state;
    conn.textContent = text;
    conn.dataset.state = state;
  }

  function connect() {
    stream = new EventSource("/api/events");
    stream.addEventListener("open", () => setConn("live", "live"));
    stream.addEventListener("snapshot", (event) => {
      setConn("live", "live");
      try { render(JSON.parse(event.data)); } catch (e) { console.warn("bad snapshot", e); }
    });
    stream.addEventListener("error", () => {
      // EventSource reconnects by itself (the server's retry: hint); CLOSED means it gave up.
      if (stream.readyState === EventSource.CLOSED) {
        setConn("reconnecting", "reconnecting…");
        setTimeout(connect, 3000);
      } else {
        setConn("reconnecting", "reconnecting…");
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("token").value = token();
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      try { sessionStorage.setItem(TOKEN_KEY, $("token").value.trim()); } catch (e) { /* private mode */ }
      $("action-msg").textContent = "token saved for this tab";
    });
    $("token-clear").addEventListener("click", () => {
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
      $("token").value = "";
      $("action-msg").textContent = "token forgotten";
    });
    $("retry-pins").addEventListener("click", () => retryQueue("pins"));
    $("retry-outbox").addEventListener("click", () => retryQueue("outbox"));
    connect();
  });
})();
