"""The flame graph page: HTML, CSS and JavaScript in one file, with no network access.

The report fills in __TITLE__ and __DATA__ (the tree as JSON, see report/flame.py). The page
draws an icicle (the root on top) of absolutely placed <div>s, one per frame wide enough
to see, labelled with its name and, where the label fits the frame's width, its value and
share (as memray's and speedscope's flame graphs do). Click a frame to zoom into it (its
ancestors stay above it, full width); click an ancestor or "Reset zoom" to zoom out; type a
regular expression in the search box to highlight frames and see their share; hover a frame
for its value and share.

For tests in a headless browser, whose DOM dump then shows the result: `?selftest=click:NAME`
in the page's URL clicks the first frame named NAME once the page is drawn (a real click
event, through the same handler as the mouse), `?selftest=search:RE` types RE in the
search box (a real input event)."""

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
  body { margin: 0; padding: 8px 12px; font: 12px/1.4 sans-serif; color: #222; background: #fff; }
  h1 { font-size: 16px; margin: 0 0 2px; }
  #info { color: #555; margin-bottom: 6px; }
  #controls { display: flex; gap: 8px; align-items: center; margin-bottom: 6px; }
  #search { width: 260px; padding: 2px 4px; font: inherit; }
  #matched { color: #8e24aa; }
  #chart { position: relative; width: 100%; overflow: hidden; }
  .frame { position: absolute; height: 17px; box-sizing: border-box; padding: 0 3px;
           border: 1px solid #fff; border-radius: 2px; overflow: hidden; white-space: nowrap;
           text-overflow: ellipsis; font: 11px/15px monospace; cursor: pointer; }
  .frame:hover { border-color: #000; }
  .frame.ancestor { opacity: 0.6; }
  .frame.match { background: #e040fb !important; color: #fff; }
  #details { margin-top: 6px; min-height: 1.4em; font-family: monospace; color: #333; }
</style>
</head>
<body>
<h1 id="title"></h1>
<div id="info"></div>
<div id="controls">
  <input id="search" type="search" placeholder="Search (regular expression)">
  <button id="reset" type="button">Reset zoom</button>
  <span id="matched"></span>
</div>
<div id="chart"></div>
<div id="details">Hover a frame for its value; click it to zoom.</div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const ROW = 18;
  const N = D.parent.length;          // tree nodes; N itself is the synthetic root "all"
  const chart = document.getElementById("chart");
  const details = document.getElementById("details");
  const matched = document.getElementById("matched");
  const search = document.getElementById("search");
  const children = Array.from({length: N + 1}, () => []);
  const parentOf = i => (i === N ? -1 : (D.parent[i] < 0 ? N : D.parent[i]));
  for (let i = 0; i < N; i++) children[parentOf(i)].push(i);
  const name = i => (i === N ? "all" : D.names[D.name[i]]);
  const value = i => (i === N ? D.total : D.value[i]);
  const rootWeight = children[N].reduce((s, k) => s + D.weight[k], 0);
  const weight = i => (i === N ? rootWeight : D.weight[i]);

  // Children sorted by name, laid side by side: x in units of weight, from the root.
  const x = new Float64Array(N + 1), depth = new Int32Array(N + 1);
  let maxDepth = 0;
  for (const stack = [N]; stack.length;) {
    const node = stack.pop();
    children[node].sort((a, b) => (name(a) < name(b) ? -1 : name(a) > name(b) ? 1 : 0));
    let at = x[node];
    for (const k of children[node]) {
      x[k] = at; at += weight(k); depth[k] = depth[node] + 1;
      maxDepth = Math.max(maxDepth, depth[k]);
      stack.push(k);
    }
  }

  function formatValue(v) {
    if (D.unit === "objects") return Math.round(v).toLocaleString("en-US") + " objects";
    const a = Math.abs(v);
    if (a >= 1073741824) return (v / 1073741824).toFixed(2) + " GB";
    if (a >= 104857.6) return (v / 1048576).toFixed(1) + " MB";
    if (a >= 1024) return (v / 1024).toFixed(1) + " kB";
    return Math.round(v) + " B";
  }
  function describe(i) {
    const share = D.share_of ? " (" + (100 * value(i) / D.share_of).toFixed(2) + "%)" : "";
    return name(i) + ": " + formatValue(value(i)) + share;
  }
  // A frame's label: its name, then its value and share where they fit the frame's width
  // (11px monospace: about 6.6px a character, 8px of padding and border).
  const CHAR_PX = 6.6, FRAME_PAD_PX = 8;
  function label(i, widthPx) {
    const share = D.share_of ? ", " + (100 * value(i) / D.share_of).toFixed(1) + "%" : "";
    const full = name(i) + " (" + formatValue(value(i)) + share + ")";
    return full.length * CHAR_PX <= widthPx - FRAME_PAD_PX ? full : name(i);
  }
  function color(i) {
    if (D.diff) {
      const r = weight(i) ? value(i) / weight(i) : 0;  // -1 all shrinkage .. 1 all growth
      return r >= 0 ? `hsl(0, 85%, ${92 - 40 * r}%)` : `hsl(215, 85%, ${92 + 40 * r}%)`;
    }
    let h = 0;
    for (const c of name(i)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return `hsl(${D.hue + (h % 40)}, ${70 + (h >> 8) % 25}%, ${55 + (h >> 16) % 15}%)`;
  }

  let zoomed = N, pattern = null;
  function addFrame(fragment, i, left, width, cls) {
    const div = document.createElement("div");
    div.className = "frame" + cls;
    div.style.left = (100 * left) + "%";
    div.style.width = (100 * width) + "%";
    div.style.top = (depth[i] * ROW) + "px";
    div.style.background = color(i);
    div.dataset.id = i;
    div.dataset.name = name(i);
    div.title = describe(i);
    div.textContent = label(i, width * (chart.clientWidth || 1200));
    if (pattern && pattern.test(name(i))) div.classList.add("match");
    fragment.appendChild(div);
  }
  function render() {
    const fragment = document.createDocumentFragment();
    for (let a = parentOf(zoomed); a !== -1; a = parentOf(a)) {
      addFrame(fragment, a, 0, 1, " ancestor");
    }
    addFrame(fragment, zoomed, 0, 1, " zoomed");
    const x0 = x[zoomed], w0 = weight(zoomed) || 1;
    const minWidth = 0.5 / (chart.clientWidth || 1200);  // narrower than half a pixel: skip
    for (const stack = [zoomed]; stack.length;) {
      for (const k of children[stack.pop()]) {
        const w = weight(k) / w0;
        if (w < minWidth) continue;
        addFrame(fragment, k, (x[k] - x0) / w0, w, "");
        stack.push(k);
      }
    }
    chart.replaceChildren(fragment);
    chart.style.height = ((maxDepth + 1) * ROW) + "px";
    chart.dataset.zoom = name(zoomed);
  }
  function highlight() {
    let sum = 0;
    if (pattern) {  // each matching frame once, not again under a matching ancestor
      for (const stack = [[N, false]]; stack.length;) {
        const [node, inside] = stack.pop();
        const hit = !inside && node !== N && pattern.test(name(node));
        if (hit) sum += value(node);
        for (const k of children[node]) stack.push([k, inside || hit]);
      }
    }
    matched.textContent = pattern ? "Matched: " + formatValue(sum) +
      (D.share_of ? " (" + (100 * sum / D.share_of).toFixed(2) + "%)" : "") : "";
    for (const f of chart.children) {
      f.classList.toggle("match", !!pattern && pattern.test(f.dataset.name));
    }
  }

  chart.addEventListener("click", e => {
    const f = e.target.closest(".frame");
    if (!f) return;
    zoomed = Number(f.dataset.id);
    render();
    details.textContent = "Zoomed into " + describe(zoomed);
  });
  chart.addEventListener("mouseover", e => {
    const f = e.target.closest(".frame");
    if (f) details.textContent = describe(Number(f.dataset.id));
  });
  document.getElementById("reset").addEventListener("click", () => { zoomed = N; render(); });
  search.addEventListener("input", () => {
    const text = search.value.trim();
    try { pattern = text ? new RegExp(text, "i") : null; }
    catch (err) { pattern = new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "i"); }
    highlight();
  });
  document.addEventListener("keydown", e => { if (e.key === "Escape") { zoomed = N; render(); } });

  document.getElementById("title").textContent = D.title;
  document.getElementById("info").textContent = [
    "Type: " + D.index + (D.units ? " (" + D.units + ")" : ""), "Total: " + formatValue(D.total),
    ...D.notes].join(" \u00b7 ");
  render();

  const test = new URLSearchParams(location.search).get("selftest") || "";
  if (test.startsWith("click:")) {
    const target = Array.from(chart.children).find(f => f.dataset.name === test.slice(6));
    if (target) target.dispatchEvent(new MouseEvent("click", {bubbles: true}));
    document.body.dataset.selftest = target ? "clicked" : "not found";
  } else if (test.startsWith("search:")) {
    search.value = test.slice(7);
    search.dispatchEvent(new Event("input"));
    document.body.dataset.selftest = "searched";
  }
})();
</script>
</body>
</html>
"""
