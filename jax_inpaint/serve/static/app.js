// The page of `jax-inpaint serve` (jax_inpaint/serve/server.py has the API it talks to).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const HOLE = [0, 170, 255];  // the colour the hole is painted in (the canvas is shown half transparent)
  const FINAL = ["done", "error", "cancelled"];
  const S = {
    info: null, R: 32, image: null, tool: "brush", drawing: false, last: null,
    abort: null, job: null, view: null, tiles: [], open: -1,
  };
  const canvas = $("mask");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });

  // ---- talking to the server -------------------------------------------------------------------
  async function api(path, options = {}) {
    let r;
    try {
      r = await fetch(path, options);
    } catch (e) {
      throw new Error("the server cannot be reached: is `jax-inpaint serve` still running?");
    }
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
    return body;
  }
  const postJSON = (path, data) => api(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data),
  });

  function showError(message) {
    $("error").textContent = message || "";
    $("error").hidden = !message;
  }
  function setStatus(state, text) {
    $("status").dataset.state = state;
    $("status").textContent = text;
  }

  // ---- the form --------------------------------------------------------------------------------
  async function init() {
    try {
      S.info = await api("/api/info");
    } catch (e) {
      showError(e.message);
      return;
    }
    const I = S.info;
    S.R = I.resolution;
    $("model-info").textContent = [`generator ${I.generator} (${I.resolution}×${I.resolution})`,
      I.classifier && `classifier ${I.classifier}`, I.clip && `CLIP ${I.clip}`].filter(Boolean).join(" · ");
    canvas.width = canvas.height = S.R;
    $("brush-size").max = Math.max(2, Math.round(S.R / 4));
    $("brush-size").value = Math.max(1, Math.round(S.R / 10));
    showBrush();
    for (const name of I.mask_presets) $("mask-preset").append(new Option(name, name));
    for (const name of Object.keys(I.presets)) $("preset").append(new Option(name, name));
    $("preset").value = I.default_preset;
    for (const v of I.space) $("space").append(new Option(v, v));
    for (const v of I.noise) $("noise").append(new Option(v, v));
    applyPreset();
    $("k").max = I.max_seeds;
    $("k").value = I.default_k;
    if (I.labels.length) {
      $("attributes-box").hidden = false;
      for (const label of I.labels) $("attribute-pick").append(new Option(label.replaceAll("_", " "), label));
    }
    $("prompts-box").hidden = !I.clip;
    $("sample-renderer").hidden = !I.samplers.includes("renderer");
    if (I.align) {
      $("upload-label").textContent = "Upload a photo…";
      $("stage-hint").textContent = "Upload a photo (its face is aligned as FFHQ's were) or sample a face, then paint the hole.";
    }
    updateHole();
    document.body.dataset.ready = "1";
  }

  function applyPreset() {
    const p = S.info.presets[$("preset").value];
    $("steps").value = p.steps;
    $("space").value = p.space;
    $("noise").value = p.noise;
  }

  function showBrush() {
    $("brush-size-text").textContent = `${$("brush-size").value} px`;
  }

  function addAttribute(name, value = 1) {
    if (!name || [...document.querySelectorAll(".attribute")].some((r) => r.dataset.name === name)) return;
    const row = document.createElement("div");
    row.className = "attribute";
    row.dataset.name = name;
    const label = document.createElement("span");
    label.textContent = name.replaceAll("_", " ");
    const range = document.createElement("input");
    Object.assign(range, { type: "range", min: 0, max: 1, step: 0.05, value });
    range.setAttribute("aria-label", name);
    const shown = document.createElement("span");
    shown.className = "note";
    const show = () => { shown.textContent = (+range.value).toFixed(2); };
    range.addEventListener("input", show);
    show();
    const remove = document.createElement("button");
    Object.assign(remove, { type: "button", textContent: "×", title: "remove" });
    remove.addEventListener("click", () => row.remove());
    row.append(label, range, shown, remove);
    $("attributes").append(row);
  }

  function attributes() {
    const out = {};
    for (const row of document.querySelectorAll(".attribute")) out[row.dataset.name] = +row.querySelector("input").value;
    return out;
  }

  // ---- the image ---------------------------------------------------------------------------------
  function setImage(url, note) {
    S.image = url;
    $("photo").src = url;
    $("stage").classList.remove("empty");
    $("image-note").textContent = note || "";
  }

  async function upload(file) {
    showError("");
    try {
      const r = await api(`/api/image?name=${encodeURIComponent(file.name)}`, { method: "POST", body: file });
      setImage(r.image, r.notices.length ? r.notices.join("; ") : file.name);
    } catch (e) {
      showError(e.message);
    }
    $("file").value = "";
  }

  async function sample(source) {
    showError("");
    const seed = Math.floor(Math.random() * 100000);
    try {
      const r = await postJSON("/api/sample", { source, seed });
      setImage(r.image, `${source === "renderer" ? "drawn by the demo renderer" : "sampled from the generator"}, seed ${seed}`);
    } catch (e) {
      showError(e.message);
    }
  }

  // ---- the hole: brush, eraser, presets ----------------------------------------------------------
  function point(e) {
    const b = canvas.getBoundingClientRect();
    return [(e.clientX - b.left) / b.width * S.R, (e.clientY - b.top) / b.height * S.R];
  }

  function paint(from, to) {
    const size = +$("brush-size").value;
    ctx.globalCompositeOperation = S.tool === "eraser" ? "destination-out" : "source-over";
    ctx.fillStyle = ctx.strokeStyle = `rgb(${HOLE.join(",")})`;
    ctx.lineWidth = size;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.arc(to[0], to[1], size / 2, 0, 2 * Math.PI);
    ctx.fill();
    if (from) {
      ctx.beginPath();
      ctx.moveTo(from[0], from[1]);
      ctx.lineTo(to[0], to[1]);
      ctx.stroke();
    }
  }

  // Every pixel is hole or not: what the canvas shows is exactly the mask that is sent.
  function binarize() {
    const d = ctx.getImageData(0, 0, S.R, S.R);
    const a = d.data;
    for (let i = 0; i < a.length; i += 4) {
      const on = a[i + 3] >= 128;
      a[i] = HOLE[0]; a[i + 1] = HOLE[1]; a[i + 2] = HOLE[2]; a[i + 3] = on ? 255 : 0;
    }
    ctx.putImageData(d, 0, 0);
  }

  function holePixels() {
    const a = ctx.getImageData(0, 0, S.R, S.R).data;
    let n = 0;
    for (let i = 3; i < a.length; i += 4) n += a[i] >= 128;
    return n;
  }

  function updateHole() {
    const n = holePixels();
    $("hole-info").textContent = n ? `hole: ${n} pixels, ${(100 * n / (S.R * S.R)).toFixed(1)} % of the image`
      : "no hole painted";
  }

  function maskPNG() {  // white = hole, as `jax-inpaint inpaint --mask` reads it
    const c = document.createElement("canvas");
    c.width = c.height = S.R;
    const x = c.getContext("2d");
    const src = ctx.getImageData(0, 0, S.R, S.R).data;
    const out = x.createImageData(S.R, S.R);
    for (let i = 0; i < src.length; i += 4) {
      const v = src[i + 3] >= 128 ? 255 : 0;
      out.data[i] = out.data[i + 1] = out.data[i + 2] = v;
      out.data[i + 3] = 255;
    }
    x.putImageData(out, 0, 0);
    return c.toDataURL("image/png");
  }

  async function presetMask(name) {
    if (!name) return;
    showError("");
    try {
      const r = await api(`/api/mask?name=${encodeURIComponent(name)}&seed=${Math.floor(Math.random() * 100000)}`);
      const img = new Image();
      await new Promise((ok, fail) => {
        img.onload = ok;
        img.onerror = () => fail(new Error("the preset mask could not be drawn"));
        img.src = r.mask;
      });
      const c = document.createElement("canvas");
      c.width = c.height = S.R;
      const x = c.getContext("2d");
      x.drawImage(img, 0, 0, S.R, S.R);
      const src = x.getImageData(0, 0, S.R, S.R).data;
      const d = ctx.createImageData(S.R, S.R);
      for (let i = 0; i < src.length; i += 4) {
        d.data[i] = HOLE[0]; d.data[i + 1] = HOLE[1]; d.data[i + 2] = HOLE[2];
        d.data[i + 3] = src[i] >= 128 ? 255 : 0;
      }
      ctx.putImageData(d, 0, 0);
      updateHole();
    } catch (e) {
      showError(e.message);
    }
    $("mask-preset").value = "";
  }

  function setTool(tool) {
    S.tool = tool;
    for (const [id, t] of [["tool-brush", "brush"], ["tool-eraser", "eraser"]]) {
      $(id).classList.toggle("active", t === tool);
      $(id).setAttribute("aria-pressed", t === tool);
    }
  }

  function inputView() {  // the input with its hole shaded, as it was sent (the viewer shows it)
    const c = document.createElement("canvas");
    c.width = c.height = S.R;
    const x = c.getContext("2d");
    x.drawImage($("photo"), 0, 0, S.R, S.R);
    x.globalAlpha = 0.6;
    x.drawImage(canvas, 0, 0);
    return c.toDataURL("image/png");
  }

  // ---- a job ---------------------------------------------------------------------------------------
  function busy(on) {
    $("inpaint").disabled = on;
    $("cancel").hidden = !on;
  }

  async function inpaint() {
    showError("");
    if (!S.image) {
      showError("load an image first: upload one or sample a face");
      return;
    }
    const body = {
      image: S.image, mask: maskPNG(), k: $("k").value, seed: $("seed").value, preset: $("preset").value,
      steps: $("steps").value, space: $("space").value, noise: $("noise").value, attributes: attributes(),
      prompts: S.info.clip ? $("prompts").value : "",
    };
    const view = inputView();
    const ctrl = new AbortController();
    S.abort = ctrl;
    busy(true);
    setStatus("sending", "sending…");
    let last = null;
    try {
      let r;
      try {
        r = await fetch("/api/jobs", {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal: ctrl.signal,
        });
      } catch (e) {
        if (e.name === "AbortError") throw e;
        throw new Error("the server cannot be reached: is `jax-inpaint serve` still running?");
      }
      if (!r.ok) {
        let b = null;
        try { b = await r.json(); } catch (e) { b = null; }
        throw new Error((b && b.error) || `${r.status} ${r.statusText}`);
      }
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (line) {
            last = JSON.parse(line);
            update(last, view);
          }
        }
      }
      if (!last || !FINAL.includes(last.state)) throw new Error("the connection to the server was lost before the job ended");
    } catch (e) {
      if (e.name === "AbortError") {
        setStatus("cancelled", "cancelled");
        $("progress").hidden = true;
      } else {
        showError(e.message);
        setStatus("error", "");
      }
    } finally {
      S.abort = null;
      busy(false);
    }
  }

  function cancel() {
    if (!S.abort) return;
    if (S.job && !FINAL.includes(S.job.state)) fetch(`/api/jobs/${S.job.id}/cancel`, { method: "POST" }).catch(() => {});
    S.abort.abort();
  }

  function newJob(s, view) {
    S.view = view;
    S.tiles = [];
    closeViewer();
    $("results").replaceChildren();
    $("download").hidden = true;
    $("summary").textContent = "";
    s.seeds.forEach((seed, i) => {
      const fig = document.createElement("figure");
      fig.className = "tile";
      const frame = document.createElement("div");
      frame.className = "frame";
      const img = document.createElement("img");
      img.className = "completion";
      img.alt = `completion, seed ${seed}`;
      img.addEventListener("load", () => {
        if (img.dataset.final === "pending") img.dataset.final = "1";
      });
      const cap = document.createElement("figcaption");
      cap.textContent = `seed ${seed}`;
      frame.append(img);
      fig.append(frame, cap);
      fig.addEventListener("click", () => openViewer(i));
      $("results").append(fig);
      S.tiles.push({ fig, img, cap });
    });
  }

  function update(s, view) {
    if (!S.job || S.job.id !== s.id) newJob(s, view);
    S.job = s;
    const bar = $("progress");
    bar.hidden = false;
    if (s.state === "queued") {
      setStatus("queued", `waiting in the queue: ${s.ahead} ${s.ahead === 1 ? "job runs" : "jobs run"} before yours`);
      bar.removeAttribute("value");
    } else if (s.state === "starting") {
      setStatus("starting", "starting (the first run with these options and K compiles the search)…");
      bar.removeAttribute("value");
    } else if (s.state === "running") {
      setStatus("running", `step ${s.done} of ${s.total}`);
      bar.max = Math.max(1, s.total);
      bar.value = s.done;
    } else if (s.state === "done") {
      const n = s.summary.seeds.length;
      const div = s.summary.diversity_hole_lpips;
      setStatus("done", `done: ${n} completion${n === 1 ? "" : "s"}` + (div === undefined ? "" : ` · diversity (LPIPS in the hole) ${div.toFixed(3)}`));
      bar.max = 1;
      bar.value = 1;
    } else if (s.state === "error") {
      showError(s.error);
      setStatus("error", "");
      bar.hidden = true;
    } else if (s.state === "cancelled") {
      setStatus("cancelled", `cancelled (${s.reason})`);
      bar.hidden = true;
    }
    s.images.forEach((url, i) => {
      const t = S.tiles[i];
      if (url && t.img.dataset.url !== url) {
        t.img.dataset.url = url;
        t.img.dataset.final = s.final ? "pending" : "";
        t.img.src = url;
        if (S.open === i) $("viewer-output").src = url;
      }
      t.cap.textContent = s.labels[i];
    });
    if (S.open >= 0) $("viewer-caption").textContent = s.labels[S.open];
    $("summary").textContent = s.notices.join("; ");
    if (s.zip) {
      $("download").href = s.zip;
      $("download").hidden = false;
    }
  }

  function openViewer(i) {
    const t = S.tiles[i];
    if (!t || !t.img.getAttribute("src")) return;
    S.tiles.forEach((u, j) => u.fig.classList.toggle("selected", j === i));
    S.open = i;
    $("viewer-input").src = S.view;
    $("viewer-output").src = t.img.src;
    $("viewer-caption").textContent = t.cap.textContent;
    $("viewer").hidden = false;
  }

  function closeViewer() {
    S.open = -1;
    $("viewer").hidden = true;
    S.tiles.forEach((u) => u.fig.classList.remove("selected"));
  }

  // ---- wiring ----------------------------------------------------------------------------------------
  canvas.addEventListener("pointerdown", (e) => {
    if (!S.image || e.button !== 0) return;
    e.preventDefault();
    canvas.setPointerCapture(e.pointerId);
    S.drawing = true;
    S.last = point(e);
    paint(null, S.last);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!S.drawing) return;
    const p = point(e);
    paint(S.last, p);
    S.last = p;
  });
  const endStroke = () => {
    if (!S.drawing) return;
    S.drawing = false;
    binarize();
    updateHole();
  };
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) canvas.addEventListener(type, endStroke);

  $("file").addEventListener("change", () => { if ($("file").files.length) upload($("file").files[0]); });
  $("sample-generator").addEventListener("click", () => sample("generator"));
  $("sample-renderer").addEventListener("click", () => sample("renderer"));
  $("tool-brush").addEventListener("click", () => setTool("brush"));
  $("tool-eraser").addEventListener("click", () => setTool("eraser"));
  $("brush-size").addEventListener("input", showBrush);
  $("clear").addEventListener("click", () => { ctx.clearRect(0, 0, S.R, S.R); updateHole(); });
  $("mask-preset").addEventListener("change", () => presetMask($("mask-preset").value));
  $("preset").addEventListener("change", applyPreset);
  $("attribute-add").addEventListener("click", () => addAttribute($("attribute-pick").value));
  $("inpaint").addEventListener("click", inpaint);
  $("cancel").addEventListener("click", cancel);
  $("viewer-close").addEventListener("click", closeViewer);
  $("viewer").addEventListener("click", (e) => { if (e.target === $("viewer")) closeViewer(); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeViewer(); });

  init();
})();
