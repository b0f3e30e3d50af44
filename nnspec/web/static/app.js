// The nnspec playground page: served by `nnspec serve` (talks to its JSON API) or embedded
// by `nnspec html` (everything precomputed in #nnspec-data, no network at all).
// No library: the editor is a transparent <textarea> over a highlighted <pre>.
// Every number shown comes from the server's analysis; this file computes none.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const src = $("src"), hl = $("hl"), gutter = $("gutter");
  const embedded = JSON.parse($("nnspec-data").textContent);
  const STATIC = embedded !== null;

  const st = {
    lang: null, columns: [], file: null, saving: false,
    version: null, savedText: null,  // what the file on disk holds, as far as the page knows
    result: null, lastGood: null,    // the latest analysis, and the latest one without errors
    diags: [],                       // [{severity, message, code, line, column, end_line, end_column, ...}]
    seq: 0, controller: null, timer: null, client: Math.random().toString(36).slice(2),
    selected: null, defaults: {}, paramsKey: "",
  };

  // ---- small helpers --------------------------------------------------------------------
  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  }
  function setStatus(text, error) {
    const s = $("status");
    s.textContent = text;
    s.title = text;
    s.classList.toggle("error", !!error);
  }
  async function api(path, body, signal) {
    const init = body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
    };
    const r = await fetch(path, init);
    let doc;
    try { doc = await r.json(); } catch (e) { doc = { error: `HTTP ${r.status}` }; }
    if (!r.ok) { const err = new Error(doc.error || `HTTP ${r.status}`); err.status = r.status; err.doc = doc; throw err; }
    return doc;
  }
  const lines = (text) => text.split("\n");  // only \n ends a line (docs/architecture.md)

  // ---- highlighting -----------------------------------------------------------------------
  let lexer = null;
  function buildLexer(lang) {
    const p = lang.patterns;
    const order = [
      ["comment", p.COMMENT], ["string", p.STRING], ["label", p.LABEL], ["shape", p.SHAPE],
      ["number", p.FLOAT], ["number", p.INT], ["name", p.NAME], ["arrow", "->"],
    ];
    return {
      rules: order.map(([cls, re]) => [cls, new RegExp(re, "y")]),
      keywords: new Set(lang.keywords), ops: new Set(lang.ops),
    };
  }
  function tokens(line, blocks) {
    // [start, end, class] in code units of `line`
    const out = [];
    let i = 0;
    while (i < line.length) {
      let hit = null;
      for (const [cls, re] of lexer.rules) {
        re.lastIndex = i;
        const m = re.exec(line);
        if (m && m[0].length) { hit = [cls, m[0]]; break; }
      }
      if (!hit) { i++; continue; }
      let [cls, text] = hit;
      if (cls === "name") {
        cls = lexer.keywords.has(text) ? "keyword" : lexer.ops.has(text) ? "op" : blocks.has(text) ? "block" : null;
      }
      if (cls) out.push([i, i + text.length, cls]);
      i += text.length;
    }
    return out;
  }
  // columns from the server count code points; JavaScript strings count UTF-16 units
  function unitIndex(line, column) {
    let units = 0, points = 1;
    for (const ch of line) { if (points >= column) break; units += ch.length; points++; }
    return points < column ? line.length + (column - points) : units;
  }

  function render() {
    const text = src.value;
    const ls = lines(text);
    const blocks = new Set();
    for (const m of text.matchAll(/(?:^|\n)[ \t]*block[ \t]+([A-Za-z_][A-Za-z0-9_]*)/g)) blocks.add(m[1]);
    const marks = ls.map(() => []);  // per line: [start, end, severity, index]
    const worst = ls.map(() => null);
    const rank = { error: 3, warning: 2, info: 1 };
    st.diags.forEach((d, k) => {
      if (d.line == null || d.line > ls.length) return;
      for (let ln = d.line; ln <= Math.min(d.end_line || d.line, ls.length); ln++) {
        const line = ls[ln - 1];
        const a = ln === d.line ? unitIndex(line, d.column || 1) : 0;
        let b = ln === (d.end_line || d.line) ? unitIndex(line, d.end_column || (d.column || 1) + 1) : line.length;
        if (b <= a) b = a + 1;
        marks[ln - 1].push([a, b, d.severity, k]);
        if (!worst[ln - 1] || rank[d.severity] > rank[worst[ln - 1]]) worst[ln - 1] = d.severity;
      }
    });
    let html = "";
    ls.forEach((line, n) => {
      const toks = tokens(line, blocks);
      const cuts = new Set([0, line.length]);
      for (const [a, b] of toks) { cuts.add(a); cuts.add(b); }
      for (const [a, b] of marks[n]) { cuts.add(Math.min(a, line.length)); cuts.add(Math.min(b, line.length)); }
      const points = [...cuts].sort((x, y) => x - y);
      let out = "";
      for (let i = 0; i + 1 < points.length; i++) {
        const a = points[i], b = points[i + 1];
        const tok = toks.find((t) => t[0] <= a && b <= t[1]);
        const ds = marks[n].filter((m) => m[0] <= a && b <= m[1]);
        const cls = [];
        if (tok) cls.push("t-" + tok[2]);
        if (ds.length) cls.push("d-" + ds.reduce((w, m) => (rank[m[2]] > rank[w] ? m[2] : w), ds[0][2]), "diag");
        const piece = esc(line.slice(a, b));
        if (!cls.length) { out += piece; continue; }
        const info = ds.length ? ` data-diag="${ds.map((m) => m[3]).join(" ")}" title="${esc(ds.map((m) => st.diags[m[3]].message).join("\n"))}"` : "";
        out += `<span class="${cls.join(" ")}"${info}>${piece}</span>`;
      }
      // a problem at the end of a line (a missing ')'): a marked space after the text
      const past = marks[n].filter((m) => m[0] >= line.length);
      if (past.length) {
        out += `<span class="d-${past[0][2]} diag" data-diag="${past.map((m) => m[3]).join(" ")}" title="${esc(past.map((m) => st.diags[m[3]].message).join("\n"))}">\u00a0</span>`;
      }
      html += `<span class="ln" data-line="${n + 1}">${out || "\u200b"}</span>`;
    });
    hl.innerHTML = html + "<span class=\"ln\"> </span>";
    let g = "";
    for (let n = 0; n < ls.length; n++) g += `<div${worst[n] ? ` class="has-${worst[n]}"` : ""}>${n + 1}</div>`;
    gutter.innerHTML = g + "<div>&nbsp;</div>";
    syncScroll();
    caretMessage();
    $("dirty").hidden = STATIC || st.savedText === null || src.value === st.savedText;
  }
  function syncScroll() {
    hl.scrollTop = src.scrollTop; hl.scrollLeft = src.scrollLeft; gutter.scrollTop = src.scrollTop;
  }
  // the textarea lies over the highlighted text: a problem's message as the tooltip where the
  // pointer is (monospaced: line and column from the coordinates)
  let charWidth = 0;
  function hover(e) {
    if (!charWidth) {
      const probe = el("span", { text: "0".repeat(50) });
      hl.append(probe); charWidth = probe.getBoundingClientRect().width / 50; probe.remove();
    }
    const box = src.getBoundingClientRect(), cs = getComputedStyle(src);
    const lh = parseFloat(cs.lineHeight) || 20;
    const line = Math.floor((e.clientY - box.top - parseFloat(cs.paddingTop) + src.scrollTop) / lh) + 1;
    const unit = Math.floor((e.clientX - box.left - parseFloat(cs.paddingLeft) + src.scrollLeft) / charWidth);
    const text = lines(src.value)[line - 1];
    let title = "";
    if (text !== undefined && unit >= 0) {
      const hit = st.diags.filter((d) => {
        if (d.line == null || line < d.line || line > (d.end_line || d.line)) return false;
        const a = line === d.line ? unitIndex(text, d.column || 1) : 0;
        const b = line === (d.end_line || d.line) ? unitIndex(text, d.end_column || (d.column || 1) + 1) : text.length;
        return a <= unit && unit < Math.max(b, a + 1);
      });
      title = hit.map((d) => `${d.code} ${d.message}`).join("\n");
    }
    if (src.title !== title) src.title = title;
  }
  function caretLine() {
    return src.value.slice(0, src.selectionStart).split("\n").length;
  }
  function caretMessage() {
    const line = caretLine();
    const here = st.diags.filter((d) => d.line != null && d.line <= line && line <= (d.end_line || d.line));
    const box = $("caret-msg");
    box.className = "caret-msg" + (here.length ? " " + here[0].severity : "");
    box.textContent = here.length ? `${here[0].code} ${here[0].message}` : "";
  }
  function goTo(line, column, select) {
    const ls = lines(src.value);
    if (!line || line > ls.length) return;
    let pos = 0;
    for (let i = 0; i < line - 1; i++) pos += ls[i].length + 1;
    pos += Math.min(unitIndex(ls[line - 1], column || 1), ls[line - 1].length);
    const lh = parseFloat(getComputedStyle(src).lineHeight) || 20;
    src.scrollTop = Math.max(0, (line - 1) * lh - src.clientHeight / 3);
    if (select) { src.focus({ preventScroll: true }); src.setSelectionRange(pos, pos); }
    syncScroll();
    const row = hl.querySelector(`.ln[data-line="${line}"]`);
    if (row) { row.classList.add("flash"); setTimeout(() => row.classList.remove("flash"), 900); }
    caretMessage();
  }

  // ---- analysis -------------------------------------------------------------------------
  function options() {
    const args = {};
    for (const input of document.querySelectorAll("#net-args input")) if (input.value.trim()) args[input.name] = input.value.trim();
    return { batch: $("opt-batch").value.trim() || null, dtype: $("opt-dtype").value, depth: $("opt-depth").value.trim() || null, args };
  }
  function schedule(delay) {
    clearTimeout(st.timer);
    st.timer = setTimeout(analyze, delay === undefined ? 250 : delay);
  }
  async function analyze() {
    const seq = ++st.seq;
    if (st.controller) st.controller.abort();  // the page shows only the newest text's analysis
    st.controller = new AbortController();
    for (const i of document.querySelectorAll(".controls input")) i.classList.remove("bad");
    setStatus("analysing…");
    const t0 = performance.now();
    try {
      const res = await api("/api/analyze", { text: src.value, ...options(), client: st.client, seq }, st.controller.signal);
      if (res.superseded || seq !== st.seq) return;
      show(res);
      setStatus(`analysed in ${Math.round(performance.now() - t0)} ms`);
    } catch (e) {
      if (e.name === "AbortError" || seq !== st.seq) return;
      if (e.status === 400 && e.doc && e.doc.field) markBadOption(e.doc.field, e.message);
      setStatus(e.message, true);
    }
  }
  function markBadOption(field, message) {
    const input = field.startsWith("args.") ? document.querySelector(`#net-args input[name="${CSS.escape(field.slice(5))}"]`)
      : $("opt-" + field);
    if (input) { input.classList.add("bad"); input.title = message; }
  }

  function show(res) {
    st.result = res;
    st.diags = [...res.diagnostics, ...res.lint].map((d) => ({ ...d, ...(d.location && d.location.file === res.file ? d.location : {}) }));
    if (res.ok) st.lastGood = res;
    if (res.params) showParams(res.params);  // null: the text did not parse; keep the controls
    render();
    showProblems();
    const good = st.lastGood;
    $("stale").hidden = res.ok || !good;
    for (const id of ["totals", "diagram", "table"]) $(id).classList.toggle("is-stale", !res.ok);
    if (!good) { $("title").textContent = "the spec has errors"; return; }
    if (res.ok || !$("table").tBodies[0].rows.length) {
      $("title").textContent = good.title;
      $("opt-batch").placeholder = String(good.table.batch);  // the train section's, else 1
      showTotals(good.totals);
      showTable(good.rows);
      showDiagram(good);
      if (st.selected) select(st.selected, false);
    }
  }
  function showParams(params) {
    const key = JSON.stringify(params.map((p) => [p.name, p.default]));
    if (key === st.paramsKey) return;
    st.paramsKey = key;
    const box = $("net-args");
    const old = {};
    for (const i of box.querySelectorAll("input")) old[i.name] = i.value;
    box.replaceChildren();
    for (const p of params) {
      const input = el("input", { name: p.name, type: "text", size: "7", placeholder: p.default == null ? "" : p.default });
      input.value = old[p.name] !== undefined ? old[p.name] : (st.defaults[p.name] || "");
      input.disabled = STATIC;
      input.addEventListener("input", () => schedule(300));
      box.append(el("label", {}, p.name + " ", input));
    }
  }
  function showProblems() {
    const ul = $("problems");
    ul.replaceChildren();
    $("problem-count").textContent = st.diags.length ? `(${st.diags.length})` : "";
    if (!st.diags.length) { ul.append(el("li", { class: "none", text: "No problems: the spec checks and lint is clean." })); return; }
    st.diags.forEach((d) => {
      const where = d.line != null ? `${d.line}:${d.column}` : (d.location ? `${d.location.file}:${d.location.line}` : "");
      const li = el("li", { class: "problem " + d.severity, "data-code": d.code, "data-line": d.line == null ? "" : d.line },
        el("span", { class: "sev " + d.severity, title: d.severity }),
        el("span", { class: "code-name", text: d.code + (d.name ? " " + d.name : "") }),
        el("span", { class: "message", text: d.message }),
        el("span", { class: "where", text: where }));
      if (d.help) li.append(el("span", { class: "help", text: "help: " + d.help }));
      li.addEventListener("click", () => goTo(d.line, d.column, !STATIC));
      ul.append(li);
    });
  }
  function showTotals(totals) {
    const dl = $("totals");
    dl.replaceChildren();
    for (const line of totals) {  // report.totals_lines: a 16-character label, then the figures
      dl.append(el("dt", { text: line.slice(0, 16).trim() }), el("dd", { text: line.slice(16).trim() }));
    }
  }
  function showTable(rows) {
    const table = $("table");
    const head = el("tr");
    st.columns.forEach((c, i) => head.append(el("th", { class: i >= 3 ? "num" : "", text: c })));
    table.tHead.replaceChildren(head);
    const body = document.createDocumentFragment();
    for (const r of rows) {
      const tr = el("tr", { "data-name": r.name, class: r.weighted ? "" : "light" });
      r.cells.forEach((c, i) => tr.append(el("td", { class: i >= 3 ? "num" : "", text: c })));
      tr.addEventListener("click", () => select(r.name, true, true));
      body.append(tr);
    }
    table.tBodies[0].replaceChildren(body);
    $("row-count").textContent = `(${rows.length})`;
  }
  function showDiagram(res) {
    const box = $("diagram");
    if (res.svg) box.innerHTML = res.svg;  // nnspec.diagram's SVG: names are escaped there
    else box.replaceChildren(el("div", { class: "empty", text: res.svg_error || "no diagram" }));
  }

  // ---- explain ----------------------------------------------------------------------------
  async function select(name, explainIt, fromRow) {
    st.selected = name;
    for (const tr of document.querySelectorAll("#table tbody tr.selected")) tr.classList.remove("selected");
    for (const g of document.querySelectorAll("#diagram .nn-node.selected")) g.classList.remove("selected");
    const tr = document.querySelector(`#table tbody tr[data-name="${CSS.escape(name)}"]`);
    if (tr) tr.classList.add("selected");
    const node = document.querySelector(`#diagram .nn-node[data-name="${CSS.escape(name)}"]`);
    if (node) node.classList.add("selected");
    if (!explainIt) return;
    if (node && fromRow) {  // the box into the diagram's view (only the diagram scrolls)
      const box = $("diagram"), r = node.getBoundingClientRect(), c = box.getBoundingClientRect();
      if (r.top < c.top || r.bottom > c.bottom) box.scrollTop += r.top - c.top - (c.height - r.height) / 2;
      if (r.left < c.left || r.right > c.right) box.scrollLeft += r.left - c.left - (c.width - r.width) / 2;
    }
    const row = st.lastGood && st.lastGood.rows.find((r) => r.name === name);
    if (row && row.line) goTo(row.line, row.column, false);
    $("explain").hidden = false;
    $("explain-name").textContent = name;
    const pre = $("explain-text");
    pre.classList.remove("error");
    if (STATIC) {
      const text = embedded.explanations[name];
      pre.textContent = text === undefined ? `no explanation stored for ${name}` : text;
      return;
    }
    pre.textContent = "…";
    try {
      const res = await api("/api/explain", { text: src.value, ...options(), name });
      if (st.selected !== name) return;
      if (res.error) { pre.classList.add("error"); pre.textContent = res.error; } else pre.textContent = res.text;
    } catch (e) { pre.classList.add("error"); pre.textContent = e.message; }
  }

  // ---- file: save, and edits made on disk ----------------------------------------------------
  async function save(force) {
    if (!st.saving) return;
    const text = src.value;
    try {
      const res = await api("/api/file", { text, version: st.version, force: !!force });
      st.version = res.version; st.savedText = text;
      $("banner").hidden = true;
      setStatus("saved");
      render();
    } catch (e) {
      if (e.status === 409) conflict("The file changed on disk since it was loaded: saving would overwrite that change.", true);
      else setStatus("not saved: " + e.message, true);
    }
  }
  function conflict(message, saving) {
    $("banner-text").textContent = message;
    $("banner-keep").textContent = saving ? "Overwrite it" : "Keep mine";
    $("banner-keep").onclick = () => { $("banner").hidden = true; if (saving) save(true); };
    $("banner").hidden = false;
  }
  async function reload() {
    const f = await api("/api/file");
    st.version = f.version;
    src.value = f.text;
    st.savedText = src.value;  // as the textarea holds it (it reads \r\n as \n)
    $("banner").hidden = true;
    render();
    schedule(0);
  }
  async function poll() {
    try {
      const v = await api("/api/file/version");
      if (v.version !== st.version && v.version !== null) {
        if (src.value === st.savedText) await reload();
        else conflict("The file changed on disk, and this page has unsaved edits.", false);
      }
    } catch (e) { /* the server went away: the next poll tries again */ }
    setTimeout(poll, 1000);
  }

  // ---- downloads --------------------------------------------------------------------------
  function download(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = el("a", { href: url, download: name });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
  function baseName() {
    const f = st.file ? st.file.split(/[\\/]/).pop().replace(/\.nn$/, "") : null;
    return f || (st.lastGood && st.lastGood.network) || "network";
  }
  async function exportAs(format) {
    const type = format === "json" ? "application/json" : "image/svg+xml";
    if (STATIC) {
      const content = format === "json" ? embedded.table_json : embedded.analysis.svg;
      if (content) download(`${baseName()}.${format}`, content, type);
      return;
    }
    try {
      const res = await api("/api/export", { text: src.value, ...options(), format });
      if (res.error) setStatus(res.error, true); else download(`${baseName()}.${format}`, res.content, type);
    } catch (e) { setStatus(e.message, true); }
  }

  // ---- wiring -----------------------------------------------------------------------------
  function wire() {
    let frame = 0;  // one highlight per frame, however many keys arrived in it
    src.addEventListener("input", () => {
      if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(); });
      if (!STATIC) schedule();
    });
    src.addEventListener("scroll", syncScroll);
    src.addEventListener("mousemove", hover);
    for (const ev of ["click", "keyup", "select"]) src.addEventListener(ev, caretMessage);
    src.addEventListener("keydown", (e) => {
      if (e.key === "Tab" && !e.shiftKey && !src.readOnly) {
        e.preventDefault();
        document.execCommand("insertText", false, "  ");
      } else if ((e.ctrlKey || e.metaKey) && e.key === "s") {
        e.preventDefault(); save(false);
      }
    });
    document.addEventListener("keydown", (e) => {
      if ((e.ctrlKey || e.metaKey) && e.key === "s") { e.preventDefault(); save(false); }
    });
    for (const id of ["opt-batch", "opt-depth"]) $(id).addEventListener("input", () => schedule(300));
    $("opt-dtype").addEventListener("change", () => schedule(0));
    $("controls").addEventListener("submit", (e) => e.preventDefault());
    $("save").addEventListener("click", () => save(false));
    $("banner-reload").addEventListener("click", reload);
    $("explain-close").addEventListener("click", () => { $("explain").hidden = true; });
    $("dl-spec").addEventListener("click", () => download(`${baseName()}.nn`, src.value, "text/plain"));
    $("dl-json").addEventListener("click", () => exportAs("json"));
    $("dl-svg").addEventListener("click", () => exportAs("svg"));
    $("diagram").addEventListener("click", (e) => {
      const node = e.target.closest(".nn-node");
      if (node && node.dataset.name) select(node.dataset.name, true);
    });
  }
  function setup(state) {
    st.lang = state.language; st.columns = state.columns; st.file = state.file; st.saving = !!state.saving;
    lexer = buildLexer(st.lang);
    const dt = $("opt-dtype");
    for (const d of state.dtypes) dt.append(el("option", { value: d, text: d }));
    const o = state.options || {};
    dt.value = o.dtype || "float32";
    $("opt-batch").value = o.batch || "";
    $("opt-depth").value = o.depth || "";
    st.defaults = o.args || {};
    $("file-name").textContent = state.file ? state.file.split(/[\\/]/).pop() : (STATIC ? "" : "(not saved to a file)");
    $("file-name").title = state.file || "";
    $("save").hidden = !st.saving;
    document.title = (state.file ? state.file.split(/[\\/]/).pop() + " · " : "") + "nnspec";
  }

  async function boot() {
    wire();
    if (STATIC) {
      setup(embedded.state);
      src.value = embedded.text;
      src.readOnly = true;
      for (const c of document.querySelectorAll(".controls input, .controls select")) c.disabled = true;
      show(embedded.analysis);
      $("opt-batch").placeholder = embedded.analysis.table ? String(embedded.analysis.table.batch) : "";
      setStatus(embedded.generated || "");
      return;
    }
    let state;
    try { state = await api("/api/state"); } catch (e) { setStatus("cannot reach the server: " + e.message, true); return; }
    setup(state);
    if (state.file) {
      const f = await api("/api/file");
      st.version = f.version;
      src.value = f.text || "";
      st.savedText = src.value;
      setTimeout(poll, 1000);
    } else {
      src.value = state.starter;
    }
    render();
    analyze();
  }
  boot();
})();
