// asn view: draws one image with its ground truth and a run's predictions from window.ASN_VIEW
// (written by `asn view` into data.js). Masks are COCO compressed RLEs (column-major runs),
// decoded here. State lives in the URL hash (#image=3&run=0&gt=1&...), so a view can be shared.
// With #selftest=1 the page draws, clicks the ground-truth toggle and draws again, and writes
// both mask checksums into <body data-*> for the headless-browser test.
(function () {
  "use strict";
  const t0 = performance.now();
  const D = window.ASN_VIEW;
  const $ = (id) => document.getElementById(id);
  const status = $("status");
  if (!D) { status.textContent = "data.js did not load"; document.body.dataset.error = "no data"; return; }

  // Fill colours: ground truth in cool tones, predictions in warm ones, by instance index.
  const GT_COLORS = [[0, 200, 255], [0, 255, 150], [120, 160, 255], [0, 160, 160], [160, 255, 60], [90, 220, 220]];
  const PRED_COLORS = [[255, 60, 60], [255, 170, 0], [255, 90, 200], [255, 230, 40], [230, 110, 40], [200, 60, 255]];

  // ---- COCO compressed RLE (pycocotools rleFrString) -> counts -> mask -----------------------
  function rleCounts(s) {
    const counts = [];
    let p = 0;
    while (p < s.length) {
      let x = 0, k = 0, more = 1;
      while (more) {
        const c = s.charCodeAt(p) - 48;
        x |= (c & 0x1f) << (5 * k);
        more = c & 0x20;
        p++; k++;
        if (!more && (c & 0x10)) x |= -1 << (5 * k);
      }
      if (counts.length > 2) x += counts[counts.length - 2];
      counts.push(x);
    }
    return counts;
  }

  // -> Uint8Array(h * w), row-major (pixel (x, y) at y * w + x)
  function decodeMask(rle, h, w) {
    const mask = new Uint8Array(h * w);
    const counts = rleCounts(rle);
    let index = 0, value = 0;
    for (const run of counts) {
      if (value) {
        for (let i = index; i < index + run; i++) mask[(i % h) * w + ((i / h) | 0)] = 1;
      }
      index += run;
      value ^= 1;
    }
    return mask;
  }

  const cache = new Map();
  function mask(key, rle, h, w) {
    let m = cache.get(key);
    if (!m) { m = decodeMask(rle, h, w); cache.set(key, m); }
    return m;
  }

  // ---- state ----------------------------------------------------------------------------------
  const state = { image: 0, run: 0, gt: true, pred: true, amodal: true, inmodal: true, order: true,
                  score: D.default_score, classes: null, selftest: false, zoom: 0 };

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const num = (k, d) => (params.has(k) && !isNaN(+params.get(k)) ? +params.get(k) : d);
    state.image = Math.min(Math.max(0, num("image", 0) | 0), D.images.length - 1);
    state.run = Math.min(Math.max(0, num("run", 0) | 0), Math.max(0, D.runs.length - 1));
    for (const k of ["gt", "pred", "amodal", "inmodal", "order"]) state[k] = num(k, 1) !== 0;
    state.score = num("score", D.default_score);
    state.classes = params.has("classes") ? new Set(params.get("classes").split(",").filter(Boolean).map(Number)) : null;
    state.selftest = num("selftest", 0) === 1;
    state.zoom = num("zoom", 0);
  }

  function writeHash() {
    const parts = [`image=${state.image}`, `run=${state.run}`];
    for (const k of ["gt", "pred", "amodal", "inmodal", "order"]) parts.push(`${k}=${state[k] ? 1 : 0}`);
    parts.push(`score=${state.score}`);
    if (state.classes) parts.push(`classes=${[...state.classes].join(",")}`);
    if (state.zoom) parts.push(`zoom=${state.zoom}`);
    if (state.selftest) parts.push("selftest=1");
    const hash = "#" + parts.join("&");
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  // ---- controls -------------------------------------------------------------------------------
  function setupControls() {
    const runSelect = $("run");
    D.runs.forEach((run, i) => runSelect.add(new Option(run.name, i)));
    if (!D.runs.length) runSelect.add(new Option("(no predictions)", 0));
    const imageSelect = $("image");
    D.images.forEach((img, i) => imageSelect.add(new Option(`${i + 1}/${D.images.length} ${img.file}`, i)));
    const classes = $("classes");
    for (const [id, name] of Object.entries(D.categories)) {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox"; box.id = `class-${id}`; box.value = id;
      box.checked = !state.classes || state.classes.has(+id);
      box.addEventListener("change", () => {
        const on = [...classes.querySelectorAll("input")].filter((b) => b.checked).map((b) => +b.value);
        state.classes = on.length === Object.keys(D.categories).length ? null : new Set(on);
        draw();
      });
      label.append(box, " " + name);
      classes.append(label);
    }
    runSelect.value = state.run; imageSelect.value = state.image;
    runSelect.addEventListener("change", () => { state.run = +runSelect.value; draw(); });
    imageSelect.addEventListener("change", () => { state.image = +imageSelect.value; show(); });
    $("prev").addEventListener("click", () => step(-1));
    $("next").addEventListener("click", () => step(1));
    document.addEventListener("keydown", (e) => {
      if (e.key === "ArrowLeft") step(-1);
      if (e.key === "ArrowRight") step(1);
    });
    for (const k of ["gt", "pred", "amodal", "inmodal", "order"]) {
      const box = $(k === "pred" ? "show-pred" : `show-${k}`);
      box.checked = state[k];
      box.addEventListener("change", () => { state[k] = box.checked; draw(); });
    }
    const zoom = $("zoom");
    if (!state.zoom) {  // small pictures (the smoke profile's 640x192) start enlarged
      const widest = Math.max(...D.images.map((img) => img.width), 1);
      state.zoom = widest <= 700 ? 1.5 : 1;
    }
    zoom.value = String(state.zoom);
    zoom.addEventListener("change", () => { state.zoom = +zoom.value; resize(); writeHash(); });
    const score = $("score");
    score.value = state.score;
    $("score-value").textContent = (+state.score).toFixed(2);
    score.addEventListener("input", () => {
      state.score = +score.value;
      $("score-value").textContent = state.score.toFixed(2);
      draw();
    });
  }

  function step(delta) {
    state.image = (state.image + delta + D.images.length) % D.images.length;
    $("image").value = state.image;
    show();
  }

  // ---- drawing --------------------------------------------------------------------------------
  const photo = $("photo"), overlay = $("masks");
  let picture = null, pictureIndex = -1, firstDrawn = false;

  function resize() {
    const img = D.images[state.image];
    if (!img) return;
    for (const canvas of [photo, overlay]) {
      canvas.style.width = `${img.width * state.zoom}px`;
      canvas.style.height = `${img.height * state.zoom}px`;
    }
  }

  function show() {
    const img = D.images[state.image];
    if (!img) { status.textContent = "no images"; return; }
    photo.width = overlay.width = img.width;
    photo.height = overlay.height = img.height;
    resize();
    pictureIndex = state.image;
    picture = new Image();
    picture.onload = () => {
      if (pictureIndex !== D.images.indexOf(img)) return;
      photo.getContext("2d").drawImage(picture, 0, 0, img.width, img.height);
      document.body.dataset.photo = img.file;
      draw();
    };
    picture.onerror = () => { document.body.dataset.photo = "missing"; draw(); };
    picture.src = img.src;
    photo.getContext("2d").clearRect(0, 0, img.width, img.height);
    draw();
  }

  function visible(inst, isPrediction) {
    if (state.classes && !state.classes.has(inst.c)) return false;
    return !isPrediction || inst.s >= state.score;
  }

  function paint(data, img, inst, key, color, alpha) {
    const { width: w, height: h } = img;
    if (state.inmodal) {
      const m = mask(key + "i", inst.i, h, w);
      for (let p = 0; p < m.length; p++) {
        if (!m[p]) continue;
        const o = p * 4, a = data[o + 3] / 255;
        // "over" compositing of a translucent fill on whatever is already painted
        const outA = alpha + a * (1 - alpha);
        for (let c = 0; c < 3; c++) data[o + c] = (color[c] * alpha + data[o + c] * a * (1 - alpha)) / outA;
        data[o + 3] = outA * 255;
      }
    }
    if (state.amodal) {
      const m = mask(key + "a", inst.a, h, w);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const p = y * w + x;
          if (!m[p]) continue;
          if (x > 0 && x < w - 1 && y > 0 && y < h - 1 && m[p - 1] && m[p + 1] && m[p - w] && m[p + w]) continue;
          const o = p * 4;
          data[o] = color[0]; data[o + 1] = color[1]; data[o + 2] = color[2]; data[o + 3] = 255;
        }
      }
    }
  }

  function draw() {
    writeHash();
    const img = D.images[state.image];
    if (!img) return;
    const ctx = overlay.getContext("2d", { willReadFrequently: true });
    const frame = ctx.createImageData(img.width, img.height);
    const data = frame.data;
    const run = D.runs[state.run];
    const gts = state.gt ? img.gt.filter((g) => visible(g, false)) : [];
    const dets = state.pred && run ? (run.detections[img.id] || []).filter((d) => visible(d, true)) : [];
    gts.forEach((g, k) => paint(data, img, g, `g${img.id}:${g.k}`, GT_COLORS[k % GT_COLORS.length], 0.35));
    // lowest score first, so the most confident prediction is painted on top
    const byScore = dets.map((d, k) => [d, k]).sort((a, b) => a[0].s - b[0].s);
    for (const [d, k] of byScore) paint(data, img, d, `r${state.run}:${img.id}:${d.k}`, PRED_COLORS[k % PRED_COLORS.length], 0.45);
    ctx.putImageData(frame, 0, 0);
    if (state.order) {
      const size = Math.max(10, Math.min(22, (img.height / 12) | 0));
      ctx.font = `bold ${size}px sans-serif`;
      ctx.textAlign = "center"; ctx.textBaseline = "middle";
      ctx.lineWidth = 3; ctx.strokeStyle = "#000";
      const label = (inst, color) => {
        if (!(inst.o > 0) || !inst.p) return;
        ctx.fillStyle = color;
        ctx.strokeText(String(inst.o), inst.p[0], inst.p[1]);
        ctx.fillText(String(inst.o), inst.p[0], inst.p[1]);
      };
      gts.forEach((g) => label(g, "#b3f0ff"));
      dets.forEach((d) => label(d, "#fff"));
    }
    // a checksum of the drawn masks (the overlay canvas is never tainted: no image is drawn on it)
    const drawn = ctx.getImageData(0, 0, img.width, img.height).data;
    let sum = 0, painted = 0;
    for (let o = 0; o < drawn.length; o += 4) {
      if (drawn[o + 3]) { painted++; sum = (sum + drawn[o] * 3 + drawn[o + 1] * 5 + drawn[o + 2] * 7 + (o >> 2)) % 1000000007; }
    }
    Object.assign(document.body.dataset, { image: img.file, gtDrawn: gts.length, predDrawn: dets.length,
                                           paintedPixels: painted, checksum: sum });
    numbers(img, run, gts, dets);
    if (!firstDrawn && (document.body.dataset.photo || "") !== "") {
      firstDrawn = true;
      const ms = performance.now() - t0;
      document.body.dataset.firstDrawMs = ms.toFixed(0);
      status.textContent = `first image drawn in ${ms.toFixed(0)} ms`;
      if (state.selftest) selftest();
    }
  }

  function row(tbody, cells, head) {
    const tr = tbody.insertRow();
    for (const cell of cells) {
      const td = document.createElement(head ? "th" : "td");
      td.textContent = cell;
      tr.append(td);
    }
  }

  const fmt = (v, digits = 1) => (v === null || v === undefined ? "n/a" : typeof v === "number" ? v.toFixed(digits) : String(v));

  function numbers(img, run, gts, dets) {
    const tbody = $("numbers").tBodies[0];
    tbody.replaceChildren();
    row(tbody, [`${img.file} (image id ${img.id}, ${img.width}x${img.height})`, ""], true);
    row(tbody, ["ground-truth instances (shown / all)", `${gts.length} / ${img.gt.length}`]);
    const all = run ? (run.detections[img.id] || []) : [];
    row(tbody, [`detections with score >= ${state.score.toFixed(2)} (shown / all in the file)`, `${dets.length} / ${all.length}`]);
    const per = run && run.per_image ? run.per_image[img.id] : null;
    if (per) {
      const t = run.order_settings;
      row(tbody, [`order (detections with score >= ${t.score_threshold}, as evaluated)`, ""], true);
      row(tbody, ["ground-truth pairs with an order", per.pairs]);
      row(tbody, ["pairs whose two instances are matched", per.pairs_matched]);
      row(tbody, ["matched pairs with the right front/back", per.pairs_correct]);
      row(tbody, ["pair order accuracy / coverage (%)",
                  `${fmt(per.pairs_matched ? 100 * per.pairs_correct / per.pairs_matched : null)} / ${fmt(per.pairs ? 100 * per.pairs_matched / per.pairs : null)}`]);
      row(tbody, ["clusters right / matched / all", `${per.clusters_correct} / ${per.clusters_matched} / ${per.clusters}`]);
    }
    const metrics = $("run-metrics").tBodies[0];
    metrics.replaceChildren();
    if (run && run.metrics) {
      row(metrics, [`run ${run.name}: whole split`, ""], true);
      for (const [key, name] of D.metric_names) if (key in run.metrics) row(metrics, [name, fmt(run.metrics[key])]);
    }
    $("source").textContent = run ? `predictions: ${run.source}` : "";
    $("legend").textContent = "Ground truth: cool colours, KINS' ico_id digits in light blue; predictions: warm colours, " +
      "their rebuilt ico_id in white (1 = occluded by nobody in its cluster). Outline = amodal mask, fill = inmodal mask.";
  }

  function selftest() {
    const before = document.body.dataset.checksum;
    const gtBefore = document.body.dataset.gtDrawn;
    $("show-gt").click();  // a real toggle through the DOM: change event -> draw()
    Object.assign(document.body.dataset, { checksumBefore: before, checksumAfter: document.body.dataset.checksum,
                                           gtBefore, gtAfter: document.body.dataset.gtDrawn, selftest: "done" });
  }

  // the RLE decoder, for tests
  window.ASN_VIEWER = { rleCounts, decodeMask };
  readHash();
  setupControls();
  show();
})();
