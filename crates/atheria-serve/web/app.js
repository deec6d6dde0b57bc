// Atheria live viewer: one WebSocket, frames in, commands out (README, "Protocol").
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(location.search).get("token");
  const withToken = (path) => token ? `${path}?token=${encodeURIComponent(token)}` : path;
  const canvas = $("field");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const EPOCHS = ["vacuum", "quantum soup", "particles", "chemistry", "gravitation"];
  const TOOL_PARAMS = {
    vortex: { radius: 6, strength: 1 },
    wave: { k_x: 1, k_y: 1 },
    collapse: { intensity: 0.5, seed: 0 },
    phase_vortex: { charge: 1, core: 2 },
    pan: {},
  };
  const SPEEDS = [1, 2, 5, 10, 15, 20, 30, 50, 75, 100, 200, 500, null];
  const state = {
    ws: null, hello: null, status: null, frame: null, frames: 0, tool: "vortex",
    params: JSON.parse(JSON.stringify(TOOL_PARAMS)), view: null, decoding: false,
    pending: null, history: { norm: [], energy: [], entropy: [], epoch: [] }, retry: 500,
  };
  window.atheria = state; // for tests and the curious

  function send(command, args) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify(args ? { command, args } : { command }));
    }
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}${withToken("/ws")}`);
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    setConn("connecting");
    ws.onopen = () => { setConn("open"); state.retry = 500; };
    ws.onclose = () => {
      setConn("closed");
      setTimeout(connect, state.retry);
      state.retry = Math.min(state.retry * 2, 8000);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") onText(JSON.parse(ev.data));
      else onFrame(ev.data);
    };
  }

  function setConn(s) { const c = $("conn"); c.dataset.state = s; c.textContent = s === "open" ? "live" : s; }

  function onText(m) {
    if (m.type === "hello") onHello(m);
    else if (m.type === "status") onStatus(m);
    else if (m.type === "error") showError(m.message);
    else if (m.type === "snapshot") { const a = document.createElement("a"); a.href = m.url; a.download = "atheria-snapshot.safetensors"; a.click(); }
  }

  function onHello(h) {
    state.hello = h;
    const sel = $("viz");
    sel.innerHTML = "";
    for (const name of h.visualizations) {
      const o = document.createElement("option"); o.value = name; o.textContent = name.replace(/_/g, " "); sel.appendChild(o);
    }
    sel.value = (state.frame && state.frame.viz) || "phase";
    if (sel.value !== "phase") send("set_viz", { viz: sel.value });
    const sparse = h.engine === "sparse";
    document.querySelectorAll(".sparse-only").forEach((e) => { e.hidden = !sparse; });
    $("hint").textContent = sparse ? "click: tool · shift-drag or Pan: move · wheel: zoom" : "click or drag to apply the tool";
    if (sparse) {
      if (state.view) sendView(); else state.view = h.view;
    }
  }

  let errorTimer = null;
  function showError(msg) {
    const e = $("error"); e.textContent = msg; e.hidden = false;
    clearTimeout(errorTimer); errorTimer = setTimeout(() => { e.hidden = true; }, 4000);
  }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
    return (Math.round(v * 1000) / 1000).toString();
  }

  function onStatus(s) {
    const prevStep = state.status ? state.status.step : -1;
    state.status = s;
    $("step").textContent = s.step;
    $("rate").textContent = s.running ? s.steps_per_s.toFixed(1) : "0";
    $("fps").textContent = s.running ? s.frames_per_s.toFixed(1) : "0";
    $("viewers").textContent = s.viewers;
    const play = $("play");
    play.textContent = s.running ? "❚❚ Pause" : "▶ Play";
    play.dataset.running = s.running;
    if (document.activeElement !== $("gamma")) {
      $("gamma").value = Math.round(Math.min(s.gamma, 0.1) * 1000); $("gammaval").textContent = fmt(s.gamma);
    }
    if (s.error) showError(s.error);
    const m = s.metrics;
    if (m) {
      $("epoch").textContent = `epoch ${m.epoch} · ${EPOCHS[m.epoch] || "?"}`;
      if (s.step !== prevStep || state.history.norm.length === 0) {
        for (const k of ["norm", "energy", "entropy", "epoch"]) {
          const h = state.history[k]; h.push(m[k]); if (h.length > 240) h.shift();
        }
      }
      for (const k of ["norm", "energy", "entropy"]) $("v-" + k).textContent = fmt(m[k]);
      $("v-epoch").textContent = String(m.epoch); $("v-epoch").title = EPOCHS[m.epoch] || "";
      drawPlots();
    }
  }

  function drawPlots() {
    for (const k of ["norm", "energy", "entropy", "epoch"]) {
      const c = $("p-" + k), g = c.getContext("2d"), d = state.history[k];
      const W = c.width, H = c.height;
      g.clearRect(0, 0, W, H);
      if (d.length < 2) continue;
      let lo = Math.min(...d), hi = Math.max(...d);
      if (k === "epoch") { lo = 0; hi = 4; }
      if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
      g.strokeStyle = "#263042"; g.lineWidth = 1;
      g.beginPath(); g.moveTo(0, H - 0.5); g.lineTo(W, H - 0.5); g.stroke();
      g.strokeStyle = k === "epoch" ? "#9ece6a" : "#7aa2f7"; g.lineWidth = 1.6;
      g.beginPath();
      d.forEach((v, i) => {
        const x = (i / (d.length - 1)) * (W - 2) + 1, y = H - 3 - ((v - lo) / (hi - lo)) * (H - 6);
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
    }
  }

  // Binary frames: a 34-byte little-endian header, the name, then pixels.
  function onFrame(buf) {
    state.pending = buf;
    if (!state.decoding) decodeNext();
  }

  async function decodeNext() {
    state.decoding = true;
    while (state.pending) {
      const buf = state.pending; state.pending = null;
      try { await drawFrame(buf); } catch (e) { console.error(e); }
    }
    state.decoding = false;
  }

  async function drawFrame(buf) {
    const dv = new DataView(buf);
    if (dv.getUint32(0, true) !== 0x46485441) throw new Error("not a frame"); // "ATHF"
    const flags = dv.getUint8(5), channels = dv.getUint8(6), scale = dv.getUint8(7);
    const w = dv.getUint32(8, true), h = dv.getUint32(12, true);
    const step = Number(dv.getBigUint64(16, true));
    const x = dv.getInt32(24, true), y = dv.getInt32(28, true);
    const nameLen = dv.getUint16(32, true);
    const viz = new TextDecoder().decode(new Uint8Array(buf, 34, nameLen));
    let px = new Uint8Array(buf, 34 + nameLen);
    if (flags & 1) {
      const stream = new Blob([px]).stream().pipeThrough(new DecompressionStream("deflate"));
      px = new Uint8Array(await new Response(stream).arrayBuffer());
    }
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    const img = ctx.createImageData(w, h);
    const out = img.data;
    for (let i = 0, j = 0; i < w * h; i++, j += channels) {
      out[4 * i] = px[j]; out[4 * i + 1] = px[j + (channels > 1 ? 1 : 0)];
      out[4 * i + 2] = px[j + (channels > 1 ? 2 : 0)]; out[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    state.frame = { w, h, x, y, scale, step, viz };
    state.frames++;
    const cells = Math.round(w / scale);
    $("region").textContent = `${viz} · ${cells} × ${Math.round(h / scale)} cells from (${x}, ${y}) · step ${step}`;
  }

  // Canvas coordinates to lattice cells.
  function cellAt(ev) {
    const f = state.frame; if (!f) return null;
    const r = canvas.getBoundingClientRect();
    // object-fit: contain letterboxes the picture inside the element.
    const k = Math.min(r.width / f.w, r.height / f.h);
    const ox = r.left + (r.width - f.w * k) / 2, oy = r.top + (r.height - f.h * k) / 2;
    const px = (ev.clientX - ox) / k, py = (ev.clientY - oy) / k;
    if (px < 0 || py < 0 || px >= f.w || py >= f.h) return null;
    return { x: f.x + Math.floor(px / f.scale), y: f.y + Math.floor(py / f.scale), px: k * f.scale };
  }

  function applyTool(cell) {
    const t = state.tool; if (t === "pan") return;
    const args = { name: t };
    for (const [k, v] of Object.entries(state.params[t])) args[k] = Number(v);
    if (t !== "wave") { args.x = cell.x; args.y = cell.y; }
    send("tool", args);
  }

  let drag = null, lastApply = 0;
  canvas.addEventListener("pointerdown", (ev) => {
    const cell = cellAt(ev); if (!cell) return;
    canvas.setPointerCapture(ev.pointerId);
    const panning = state.hello && state.hello.engine === "sparse" && (state.tool === "pan" || ev.shiftKey || ev.button === 1);
    drag = { panning, sx: ev.clientX, sy: ev.clientY, view: state.view && { ...state.view }, px: cell.px };
    if (!panning) { applyTool(cell); lastApply = performance.now(); }
  });
  canvas.addEventListener("pointermove", (ev) => {
    const cell = cellAt(ev);
    $("cursor").textContent = cell ? `(${cell.x}, ${cell.y})` : "";
    if (!drag) return;
    if (drag.panning && drag.view) {
      const dx = Math.round((ev.clientX - drag.sx) / drag.px), dy = Math.round((ev.clientY - drag.sy) / drag.px);
      state.view = { ...drag.view, x: drag.view.x - dx, y: drag.view.y - dy };
      sendView();
    } else if (cell && performance.now() - lastApply > 90) {
      applyTool(cell); lastApply = performance.now();
    }
  });
  const endDrag = () => { drag = null; };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("pointerleave", () => { $("cursor").textContent = ""; });
  canvas.addEventListener("wheel", (ev) => {
    if (!state.hello || state.hello.engine !== "sparse" || !state.view) return;
    ev.preventDefault();
    const cell = cellAt(ev) || { x: state.view.x + state.view.width / 2, y: state.view.y + state.view.height / 2 };
    const v = state.view, maxSide = Math.floor(Math.sqrt(state.hello.max_view_cells));
    const side = Math.max(8, Math.min(maxSide, Math.round(v.width * (ev.deltaY > 0 ? 1.25 : 0.8))));
    const fx = (cell.x - v.x) / v.width, fy = (cell.y - v.y) / v.height;
    state.view = { x: Math.round(cell.x - fx * side), y: Math.round(cell.y - fy * side), width: side, height: side };
    sendView();
  }, { passive: false });

  let viewTimer = null;
  function sendView() {
    clearTimeout(viewTimer);
    viewTimer = setTimeout(() => { if (state.view) send("view", state.view); }, 40);
  }

  function renderParams() {
    const box = $("params"); box.innerHTML = "";
    for (const [k, v] of Object.entries(state.params[state.tool])) {
      const l = document.createElement("label"); l.textContent = k.replace("_", " ");
      const i = document.createElement("input"); i.type = "number"; i.step = "any"; i.value = v;
      i.addEventListener("input", () => { state.params[state.tool][k] = i.value; });
      l.appendChild(i); box.appendChild(l);
    }
    canvas.classList.toggle("panning", state.tool === "pan");
  }
  document.querySelectorAll(".tool").forEach((b) => b.addEventListener("click", () => {
    document.querySelectorAll(".tool").forEach((o) => o.classList.remove("active"));
    b.classList.add("active"); state.tool = b.dataset.tool; renderParams();
    if (state.tool === "wave") applyTool({ x: 0, y: 0 });
  }));

  $("play").addEventListener("click", () => send(state.status && state.status.running ? "pause" : "play"));
  $("stepbtn").addEventListener("click", () => send("step"));
  $("reset").addEventListener("click", () => send("reset"));
  $("viz").addEventListener("change", (e) => send("set_viz", { viz: e.target.value }));
  $("speed").addEventListener("input", (e) => {
    const s = SPEEDS[Number(e.target.value)];
    $("speedval").textContent = s === null ? "max" : `${s}/s`;
    send("set_speed", { steps_per_s: s });
  });
  $("gamma").addEventListener("change", (e) => {
    const g = Number(e.target.value) / 1000; $("gammaval").textContent = fmt(g);
    send("set_gamma", { gamma: g });
  });
  $("gamma").addEventListener("input", (e) => { $("gammaval").textContent = fmt(Number(e.target.value) / 1000); });
  $("snapshot").addEventListener("click", () => send("snapshot"));
  $("loadfile").addEventListener("change", async (e) => {
    const f = e.target.files[0]; if (!f) return;
    const r = await fetch(withToken("/load"), { method: "POST", body: f });
    if (!r.ok) { try { showError((await r.json()).message); } catch (_) { showError(`load failed (${r.status})`); } }
    e.target.value = "";
  });
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (e.code === "Space") { e.preventDefault(); $("play").click(); }
    if (e.code === "ArrowRight") send("step");
  });

  renderParams();
  connect();
})();
