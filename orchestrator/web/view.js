// arborist's campaign view. No library, no build step: DOM and SVG by hand.
// Every ledger string (changes, hypotheses, diffs, logs) is written with textContent or as an SVG
// text node, never parsed as HTML: an LLM wrote them and they may hold markup.
"use strict";
(function () {
  const SVGNS = "http://www.w3.org/2000/svg";
  const POLL_MS = 5000;
  const embedded = document.getElementById("arborist-data");
  const STATIC = embedded ? JSON.parse(embedded.textContent) : null;
  const state = { data: null, selected: null, expanded: new Map(), tablePage: 0, tableStatus: "" };

  // ----- small helpers ------------------------------------------------------------------
  function el(tag, attrs, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "onclick") node.addEventListener("click", v);
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) node.append(kid instanceof Node ? kid : String(kid));
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const fmt = (v, d = 4) => (v === null || v === undefined ? "–" : Number(v).toPrecision(d).replace(/\.?0+$/, "").replace(/\.?0+e/, "e"));
  const signed = (v) => (v === null || v === undefined ? "–" : (v >= 0 ? "+" : "") + fmt(v));
  const interval = (lo, hi) => (lo === null || lo === undefined ? "" : `[${signed(lo)}, ${signed(hi)}]`);

  async function api(path, params) {
    const url = new URL(path, window.location.href);
    for (const [k, v] of Object.entries(params || {})) url.searchParams.set(k, v);
    const response = await fetch(url, { cache: "no-store" });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }
  async function childrenPage(nodeId, offset, limit) {
    if (STATIC) {
      const page = STATIC.pages[nodeId];
      if (!page) return { node: nodeId, offset, total: 0, rows: [], missing: true };
      return { ...page, rows: page.rows.slice(offset, offset + limit), total: page.total, kept: page.rows.length };
    }
    return api("api/children", { node: nodeId, offset, limit });
  }
  async function nodeDetail(nodeId) {
    if (STATIC) return STATIC.details[nodeId] || null;
    return api("api/node", { id: nodeId });
  }
  async function nodesPage(offset, limit, status) {
    if (STATIC) {
      const t = STATIC.table;
      return { ...t, rows: t.rows.slice(offset, offset + limit), offset };
    }
    return api("api/nodes", { offset, limit, status });
  }

  // ----- the tree ---------------------------------------------------------------------------
  function statusBadge(status) { return el("span", { class: `status status-${status}`, text: status }); }
  function nodeRow(row) {
    const line = el("div", { class: "node-row", "data-node": row.id, "data-status": row.status },
      el("span", { class: "id", text: row.id }), statusBadge(row.status),
      el("span", { class: "change", title: row.change, text: row.change }),
      el("span", { class: "gain", text: row.gain === null ? "" : ` gain ${signed(row.gain)} ${interval(row.ci_low, row.ci_high)}` }),
      row.children ? el("span", { class: "muted", text: ` · ${row.children} children` }) : null);
    if (state.selected === row.id) line.classList.add("selected");
    line.addEventListener("click", (event) => { event.stopPropagation(); select(row.id); });
    return line;
  }

  function childList(nodeId, total, firstRows, skip) {
    // The children of nodeId: firstRows already known, more paged in on demand.
    const list = el("ul", { class: "children", "data-parent": nodeId });
    let offset = 0;
    const add = (rows) => {
      for (const row of rows) {
        if (skip && skip.has(row.id)) continue;
        list.insertBefore(childItem(row), more);
      }
    };
    const more = el("li", {});
    const refreshMore = () => {
      more.replaceChildren();
      const left = total - offset - (skip ? skip.size : 0);
      if (left > 0) {
        more.append(el("button", {
          class: "more", "data-parent": nodeId, onclick: async (event) => {
            event.stopPropagation();
            const page = await childrenPage(nodeId, offset, state.data.page_limit > 50 ? 50 : state.data.page_limit);
            offset += Math.max(page.rows.length, 0);
            add(page.rows);
            if (page.rows.length === 0) { more.replaceChildren(el("span", { class: "note", text: `${left} more not included in this file` })); return; }
            refreshMore();
          },
        }, `${left} more`));
      }
    };
    list.append(more);
    if (firstRows) { add(firstRows); offset = 0; }
    refreshMore();
    return list;
  }

  function childItem(row) {
    const item = el("li", {}, nodeRow(row));
    if (row.children) {
      const toggle = el("button", { class: "toggle", "data-node": row.id, text: "+" });
      item.firstChild.prepend(toggle);
      toggle.addEventListener("click", (event) => {
        event.stopPropagation();
        const open = item.querySelector(":scope > ul");
        if (open) { open.remove(); toggle.textContent = "+"; state.expanded.delete(row.id); return; }
        toggle.textContent = "−";
        state.expanded.set(row.id, true);
        item.append(childList(row.id, row.children, null, null));
        item.querySelector(":scope > ul button.more")?.click();
      });
    }
    return item;
  }

  function renderTree(data) {
    const box = el("section", { id: "tree", class: "tree" }, el("h2", { text: "Tree" }));
    const lineage = data.tree.lineage;
    box.append(el("p", { class: "note", text: `${data.node_total} nodes. The incumbent's lineage (bold), each step's best ${5} other children; the rest load on demand. Click a node for its evidence, change and trials.` }));
    let parentList = el("ul", {});
    box.append(parentList);
    const onLineage = new Set(lineage.map((r) => r.id));
    for (const row of lineage) {
      const kids = data.tree.children[row.id];
      const item = el("li", { class: "lineage" }, nodeRow(row));
      parentList.append(item);
      const skip = new Set([...onLineage].filter((id) => id !== row.id));
      const shownIds = new Set(kids.rows.map((r) => r.id));
      const list = childList(row.id, kids.total - lineageChildren(row.id, lineage), kids.rows, null);
      // Paging skips rows already shown (the first rows, and the lineage's next step).
      list.dataset.skip = [...shownIds].join(",");
      item.append(list);
      pagedSkip(list, row.id, new Set([...shownIds, ...skip]), kids.total - lineageChildren(row.id, lineage) - kids.rows.length);
      parentList = el("ul", {});
      item.append(parentList);
    }
    return box;
  }
  function lineageChildren(nodeId, lineage) {
    return lineage.some((r) => r.parent === nodeId) ? 1 : 0;
  }
  function pagedSkip(list, nodeId, skip, left) {
    // Replace the list's "more" button: page past the rows shown, skipping those already there.
    const more = list.lastChild;
    more.replaceChildren();
    let offset = 0;
    let remaining = left;
    const draw = () => {
      more.replaceChildren();
      if (remaining <= 0) return;
      more.append(el("button", {
        class: "more", "data-parent": nodeId, onclick: async (event) => {
          event.stopPropagation();
          const page = await childrenPage(nodeId, offset, 50);
          if (page.rows.length === 0) { more.replaceChildren(el("span", { class: "note", text: `${remaining} more not included in this file` })); return; }
          offset += page.rows.length;
          for (const row of page.rows) {
            if (skip.has(row.id)) continue;
            skip.add(row.id);
            list.insertBefore(childItem(row), more);
            remaining -= 1;
          }
          draw();
        },
      }, `${remaining} more`));
    };
    draw();
  }

  // ----- the selected node ------------------------------------------------------------------
  async function select(nodeId) {
    state.selected = nodeId;
    document.querySelectorAll(".node-row.selected").forEach((n) => n.classList.remove("selected"));
    document.querySelectorAll(`.node-row[data-node="${CSS.escape(nodeId)}"]`).forEach((n) => n.classList.add("selected"));
    const panel = document.getElementById("detail");
    panel.replaceChildren(el("h2", { text: `Node ${nodeId}` }), el("p", { class: "muted", text: "loading…" }));
    let d;
    try { d = await nodeDetail(nodeId); } catch (err) { panel.append(el("p", { text: String(err) })); return; }
    panel.replaceChildren(el("h2", { text: `Node ${nodeId}` }));
    if (!d) { panel.append(el("p", { class: "note", text: "This node's details are not included in this file; `arborist serve` shows every node." })); return; }
    const r = d.row;
    panel.append(el("p", {}, statusBadge(r.status), el("span", { text: r.change })));
    const g = d.gain_vs_baseline;
    panel.append(el("p", { id: "detail-gain", text: `gain over its parent ${signed(r.gain)} ${interval(r.ci_low, r.ci_high)}; over the baseline ${signed(g.mean)} ${interval(g.ci_low, g.ci_high)} (n=${g.n})` }));
    if (d.decision && Object.keys(d.decision).length) {
      panel.append(el("h3", { text: "Decision" }), el("p", { text: d.decision.reason || "" }));
      panel.append(keyTable(d.evidence));
    }
    if (d.change) {
      panel.append(el("h3", { text: `Change (${d.change.kind}, ${d.change.proposer})` }), el("p", { text: d.change.hypothesis }));
      if (d.change.diff) panel.append(el("pre", { class: "diff", text: d.change.diff }));
      if (d.change.params && Object.keys(d.change.params).length) panel.append(el("pre", { text: JSON.stringify(d.change.params, null, 1) }));
    }
    if (d.chain.length) panel.append(el("p", { class: "note", text: "chain: " + d.chain.map((c) => `${c.node_id} ${c.change}`).join(" → ") }));
    panel.append(el("h3", { text: `Trials (${d.trials.length})` }));
    const metricNames = [...new Set(d.trials.flatMap((t) => Object.keys(t.metrics)))].sort();
    const table = el("table", { class: "trials" }, el("tr", {}, ...["trial", "seed", "block", "state", "s", ...metricNames].map((h) => el("th", { text: h }))));
    for (const t of d.trials) {
      table.append(el("tr", {}, el("td", { text: t.trial_id }), el("td", { class: "num", text: t.seed }), el("td", { class: "num", text: t.block }),
        el("td", { text: t.state }), el("td", { class: "num", text: t.duration_s === null ? "–" : t.duration_s }),
        ...metricNames.map((m) => el("td", { class: "num", text: fmt(t.metrics[m]) }))));
    }
    panel.append(table);
    for (const t of d.trials.filter((t) => t.log_tail || t.message)) {
      panel.append(el("h4", { text: `${t.trial_id}: ${t.state}` }), el("p", { text: t.message }));
      if (t.log_tail) panel.append(el("pre", { class: "log", text: t.log_tail }));
    }
  }
  function keyTable(obj) {
    const table = el("table", { class: "evidence" });
    for (const [k, v] of Object.entries(obj || {})) {
      const shown = typeof v === "number" ? fmt(v) : typeof v === "string" ? v : JSON.stringify(v);
      table.append(el("tr", {}, el("th", { text: k }), el("td", { text: shown.length > 400 ? shown.slice(0, 400) + "…" : shown })));
    }
    return table;
  }

  // ----- plots ---------------------------------------------------------------------------------
  function frame(width, height, xs, ys, margin) {
    const m = margin || { l: 60, r: 16, t: 12, b: 34 };
    let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    if (!(x1 > x0)) { x0 -= 1; x1 += 1; }
    if (!(y1 > y0)) { y0 -= 1; y1 += 1; }
    const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
    return {
      m, width, height, x0, x1, y0, y1,
      x: (v) => m.l + (v - x0) / (x1 - x0) * (width - m.l - m.r),
      y: (v) => m.t + (y1 - v) / (y1 - y0) * (height - m.t - m.b),
    };
  }
  function axes(root, f, xLabel, yLabel) {
    root.append(svg("line", { class: "axis", x1: f.m.l, x2: f.width - f.m.r, y1: f.height - f.m.b, y2: f.height - f.m.b }));
    root.append(svg("line", { class: "axis", x1: f.m.l, x2: f.m.l, y1: f.m.t, y2: f.height - f.m.b }));
    for (let i = 0; i <= 4; i++) {
      const xv = f.x0 + (f.x1 - f.x0) * i / 4, yv = f.y0 + (f.y1 - f.y0) * i / 4;
      root.append(svg("text", { x: f.x(xv), y: f.height - f.m.b + 14, "text-anchor": "middle" }, fmt(xv, 3)));
      root.append(svg("text", { x: f.m.l - 4, y: f.y(yv) + 4, "text-anchor": "end" }, fmt(yv, 3)));
    }
    root.append(svg("text", { x: (f.m.l + f.width - f.m.r) / 2, y: f.height - 4, "text-anchor": "middle" }, xLabel));
    root.append(svg("text", { x: 12, y: f.m.t + 10 }, yLabel));
  }
  function steps(points, f) {
    return points.map(([x, y], i) => (i === 0 ? `M${f.x(x)},${f.y(y)}` : `H${f.x(x)}V${f.y(y)}`)).join("");
  }

  function renderIncumbent(data) {
    const box = el("section", { id: "incumbent-plot" }, el("h2", { text: "Incumbent over the campaign" }));
    const h = data.incumbent_history.filter((r) => r.gain !== null);
    if (!h.length) { box.append(el("p", { class: "muted", text: "No incumbent yet." })); return box; }
    const trialsNow = Object.values(data.counts.trials).reduce((a, b) => a + b, 0);
    for (const [key, label, end] of [["trials", "trials finished", trialsNow], ["elapsed_s", "elapsed seconds", data.elapsed_s]]) {
      const pts = h.map((r) => [r[key], r.gain]);
      pts.push([Math.max(end, pts[pts.length - 1][0]), h[h.length - 1].gain]);
      const f = frame(420, 200, pts.map((p) => p[0]), [...h.map((r) => r.ci_low ?? r.gain), ...h.map((r) => r.ci_high ?? r.gain)]);
      const root = svg("svg", { width: 420, height: 200, class: `incumbent-${key}`, role: "img" });
      axes(root, f, label, `gain over baseline (${data.objective.name})`);
      root.append(svg("path", { d: steps(pts, f), fill: "none", stroke: "#0072B2", "stroke-width": 2 }));
      for (const r of h) {
        if (r.ci_low !== null) root.append(svg("line", { x1: f.x(r[key]), x2: f.x(r[key]), y1: f.y(r.ci_low), y2: f.y(r.ci_high), stroke: "#0072B2", opacity: 0.4 }));
        const dot = svg("circle", { cx: f.x(r[key]), cy: f.y(r.gain), r: 3, fill: "#0072B2" });
        dot.append(svg("title", {}, `${r.node_id}: ${signed(r.gain)} at ${r[key]} ${label}`));
        root.append(dot);
      }
      box.append(root);
    }
    return box;
  }

  function renderForest(data) {
    const fo = data.forest;
    const box = el("section", { id: "forest" }, el("h2", { text: `Effects: ${fo.total} decided changes` }));
    if (!fo.rows.length) { box.append(el("p", { class: "muted", text: "No decided change yet." })); return box; }
    const rowH = 14, height = fo.rows.length * rowH + 50;
    const lows = fo.rows.map((r) => r.ci_low ?? r.gain), highs = fo.rows.map((r) => r.ci_high ?? r.gain);
    const f = frame(520, height, [...lows, ...highs, 0], [0, 1], { l: 150, r: 16, t: 10, b: 34 });
    const root = svg("svg", { width: 520, height, class: "forest", role: "img" });
    root.append(svg("line", { class: "axis ref", x1: f.x(0), x2: f.x(0), y1: 10, y2: height - 34 }));
    fo.rows.forEach((r, i) => {
      const y = 10 + i * rowH + rowH / 2;
      const colour = r.status === "PROMOTED" ? "#009E73" : r.status === "FAILED" ? "#D55E00" : "#555";
      const label = svg("text", { x: 146, y: y + 4, "text-anchor": "end", "data-node": r.id }, `${r.id} ${r.change.slice(0, 18)}`);
      label.addEventListener("click", () => select(r.id));
      root.append(label);
      if (r.ci_low !== null) root.append(svg("line", { x1: f.x(r.ci_low), x2: f.x(r.ci_high), y1: y, y2: y, stroke: colour }));
      const dot = svg("circle", { class: "effect", cx: f.x(r.gain), cy: y, r: 3.5, fill: colour, "data-node": r.id });
      dot.append(svg("title", {}, `${r.id} ${r.status}: ${signed(r.gain)} ${interval(r.ci_low, r.ci_high)}`));
      root.append(dot);
    });
    root.append(svg("text", { x: f.x(0), y: height - 20, "text-anchor": "middle" }, "0"));
    root.append(svg("text", { x: (150 + 504) / 2, y: height - 4, "text-anchor": "middle" }, `gain over the parent (${data.objective.name})`));
    box.append(root);
    if (fo.total > fo.rows.length) box.append(el("p", { class: "note", text: `The ${fo.rows.length / 2} best and worst of ${fo.total}; all of them in the histogram below.` }));
    const hg = fo.histogram;
    if (hg.counts.length) {
      const hf = frame(520, 140, [hg.low, hg.high], [0, Math.max(...hg.counts)]);
      const hs = svg("svg", { width: 520, height: 140, class: "histogram", role: "img" });
      axes(hs, hf, "gain", "changes");
      const w = (hg.high - hg.low) / hg.counts.length;
      hg.counts.forEach((c, i) => {
        const x0 = hf.x(hg.low + i * w), x1 = hf.x(hg.low + (i + 1) * w);
        hs.append(svg("rect", { x: x0, y: hf.y(c), width: Math.max(1, x1 - x0 - 1), height: hf.y(0) - hf.y(c), fill: "#56B4E9" }));
      });
      box.append(hs);
    }
    return box;
  }

  function renderControls(data) {
    const c = data.controls;
    const box = el("section", { id: "controls" }, el("h2", { text: "Controls and drift" }));
    const all = c.series.flatMap((s) => s.points);
    if (!all.length) { box.append(el("p", { class: "muted", text: "No controls yet." })); return box; }
    const f = frame(620, 240, all.map((p) => p[0]), all.map((p) => p[1]));
    const root = svg("svg", { width: 620, height: 240, class: "control-chart", role: "img" });
    axes(root, f, "trials finished (dispatch order)", c.objective);
    const palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];
    c.series.forEach((s, i) => {
      const colour = palette[i % palette.length];
      if (s.points.length) root.append(svg("path", { class: "series", "data-node": s.node_id, d: s.points.map(([x, y], j) => `${j ? "L" : "M"}${f.x(x)},${f.y(y)}`).join(""), fill: "none", stroke: colour }));
      if (s.reference !== null) root.append(svg("line", { class: "ref", x1: f.m.l, x2: f.width - f.m.r, y1: f.y(s.reference), y2: f.y(s.reference), stroke: colour }));
    });
    for (const m of c.markers) {
      root.append(svg("line", { class: "drift", x1: f.x(m.at), x2: f.x(m.at), y1: f.m.t, y2: f.height - f.m.b }));
    }
    box.append(root);
    if (c.total > c.series.length) box.append(el("p", { class: "note", text: `The baseline and the ${c.series.length - 1} busiest of ${c.total - 1} other control nodes.` }));
    const ct = data.controls_table;
    if (ct.total > ct.nodes.length) box.append(el("p", { class: "note", text: `The first ${ct.nodes.length} of ${ct.total} control nodes:` }));
    box.append(table(["control node", "controls", "first-window mean", "last-window mean", "shift (seed sds)"],
      data.controls_table.nodes.map((r) => [r.node_id, r.controls, fmt(r.first_mean), fmt(r.last_mean), signed(r.shift_sds)]), "controls-table"));
    if (data.drift_events.length) {
      box.append(el("h3", { text: "Drift detected" }), table(["drift of", "at", "shift (seed sds)", "z"],
        data.drift_events.map((e) => [e.node_id, e.at_order, signed(e.shift_sds), signed(e.z)]), "drift-table"));
    } else box.append(el("p", { class: "note", text: "No drift detected." }));
    return box;
  }

  function table(headers, rows, id) {
    const t = el("table", id ? { id } : {}, el("tr", {}, ...headers.map((h) => el("th", { text: h }))));
    for (const row of rows) t.append(el("tr", {}, ...row.map((v) => el("td", { class: typeof v === "number" ? "num" : "", text: v === null || v === undefined ? "–" : String(v) }))));
    return t;
  }

  function renderAblation(data) {
    const box = el("section", { id: "ablation" }, el("h2", { text: "Integration and ablation" }));
    if (!data.ablation.length) { box.append(el("p", { class: "muted", text: "No integration: fewer than two branches were promoted." })); return box; }
    const gain = (g) => (g && g.mean !== null && g.mean !== undefined ? `${signed(g.mean)} ${interval(g.ci_low, g.ci_high)}` : "–");
    box.append(el("p", { text: `Final combination: ${data.integration.final || "–"}` }));
    box.append(table(["winner", "changes", "alone", "in combination", "kept", "conflict"],
      data.ablation.map((r) => [r.winner, r.changes.join("; "), gain(r.alone), gain(r.in_combination), r.kept ? "yes" : "no", r.conflict || ""]), "ablation-table"));
    return box;
  }

  function renderRejected(data) {
    const r = data.rejected;
    const box = el("section", { id: "rejected" }, el("h2", { text: `Rejected proposals (${r.total})` }));
    if (!r.total) { box.append(el("p", { class: "muted", text: "None: every proposal became a node." })); return box; }
    if (r.total > r.rows.length) box.append(el("p", { class: "note", text: `The newest ${r.rows.length}; the report lists them all.` }));
    box.append(table(["proposal", "on", "proposer", "source", "change", "reason"],
      r.rows.map((p) => [p.proposal_id, p.parent_id, p.proposer, p.source_id || "", p.change, p.reason]), "rejected-table"));
    return box;
  }

  function renderCosts(data) {
    const c = data.costs;
    const box = el("section", { id: "costs" }, el("h2", { text: "Costs and placement" }));
    box.append(table(["trial-hours", "GPU-hours", "LLM calls", "LLM tokens", "LLM $"],
      [[c.trial_hours, c.gpu_hours, c.llm_calls, c.llm_tokens, `$${Number(c.llm_usd).toFixed(4)}`]], "costs-table"));
    const byProposer = Object.entries(c.llm_by_proposer);
    if (byProposer.length) box.append(table(["proposer", "calls", "tokens", "$"], byProposer.map(([name, r]) => [name, r.calls, (r.prompt_tokens || 0) + (r.completion_tokens || 0), `$${Number(r.usd).toFixed(4)}`])));
    const p = data.placement;
    box.append(el("h3", { text: `Machines (${p.nodes.length}); lost attempts: ${p.lost}` }));
    box.append(table(["node", "host", "accelerators", "GPUs", "run", "finished", "failed", "lost"],
      p.nodes.map((n) => [n.node || "–", n.hostname, n.accelerators.join(", "), n.gpu_ids.join(" "), n.run, n.finished, n.failed, n.lost]), "placement-table"));
    return box;
  }

  function renderTable(data) {
    const box = el("section", { id: "nodes", class: "wide" }, el("h2", { text: "All nodes" }));
    const statuses = ["", ...Object.keys(data.counts.nodes)];
    const select_ = el("select", {}, ...statuses.map((s) => el("option", { value: s, text: s || "every status" })));
    if (STATIC) select_.disabled = true;
    select_.value = state.tableStatus;
    const body = el("div", {});
    const pager = el("div", {});
    const load = async () => {
      const limit = 50;
      const page = await nodesPage(state.tablePage * limit, limit, state.tableStatus);
      body.replaceChildren(table(["node", "parent", "status", "change", "proposer", "gain", "interval", "trials"],
        page.rows.map((r) => [r.id, r.parent || "", r.status, r.change, r.proposer, signed(r.gain), interval(r.ci_low, r.ci_high), r.trials]), "nodes-table"));
      body.querySelectorAll("#nodes-table tr").forEach((tr, i) => { if (i) tr.addEventListener("click", () => select(page.rows[i - 1].id)); });
      const kept = STATIC ? STATIC.table.rows.length : page.total;
      const pages = Math.max(1, Math.ceil(kept / limit));
      pager.replaceChildren(
        el("button", { onclick: () => { if (state.tablePage > 0) { state.tablePage -= 1; load(); } } }, "‹ previous"),
        el("span", { class: "note", text: ` page ${state.tablePage + 1} of ${pages} (${page.total} nodes) ` }),
        el("button", { onclick: () => { if (state.tablePage + 1 < pages) { state.tablePage += 1; load(); } } }, "next ›"),
        STATIC && page.total > kept ? el("span", { class: "note", text: ` the first ${kept} rows are in this file; \`arborist serve\` pages through all.` }) : null);
    };
    select_.addEventListener("change", () => { state.tableStatus = select_.value; state.tablePage = 0; load(); });
    box.append(el("p", {}, "status ", select_), body, pager);
    load();
    return box;
  }

  function renderHeader(data) {
    const inc = data.incumbent;
    const counts = (o) => Object.entries(o).map(([k, v]) => `${v} ${k.toLowerCase()}`).join(", ") || "none";
    const head = el("header", { class: "campaign" },
      el("h1", { text: `Campaign ${data.campaign}` }),
      el("p", {}, el("span", { id: "phase", text: `Phase ${data.phase}${data.finished_reason ? ` (${data.finished_reason})` : ""}` }),
        ` · objective ${data.objective.name} (${data.objective.direction}imize) · `,
        el("span", { id: "node-count", text: `${data.node_total} nodes` }), ` (${counts(data.counts.nodes)}) · trials: ${counts(data.counts.trials)} · elapsed ${Math.round(data.elapsed_s)} s`),
      el("p", { id: "incumbent" }, inc === null ? "No incumbent yet." :
        el("span", { id: "incumbent-gain", text: `Incumbent ${inc.node_id}: gain over the baseline ${signed(inc.gain.mean)} ${interval(inc.gain.ci_low, inc.gain.ci_high)} (n=${inc.gain.n})` })));
    if (data.suspects.length) head.append(el("p", { id: "suspects", text: `${data.suspects.length} suspect node(s) wait for a verdict: ${data.suspects.map((s) => s.node_id).join(", ")} (arborist approve / reject).` }));
    if (STATIC) {
      const left = STATIC.left_out;
      head.append(el("p", { class: "note", id: "left-out", text: `A snapshot at ledger event ${data.last_seq}. Left out of this file: ${left.tree_nodes} nodes of the tree, the details of ${left.details} nodes, ${left.table_rows} rows of the nodes table; \`arborist serve\` shows them all.` }));
    }
    return head;
  }

  function render(data) {
    state.data = data;
    const app = document.getElementById("app");
    const detail = el("section", { id: "detail" }, el("h2", { text: "Node" }), el("p", { class: "muted", text: "Click a node in the tree, the forest plot or the table." }));
    app.replaceChildren(renderHeader(data), renderTree(data), detail, renderIncumbent(data), renderForest(data),
      renderControls(data), renderAblation(data), renderRejected(data), renderCosts(data), renderTable(data));
    if (state.selected) select(state.selected);
    document.body.dataset.rendered = String(data.last_seq);
    // For benchmarks: when the first render ended, on the page's own clock.
    if (!window.arboristFirstRenderMs) window.arboristFirstRenderMs = performance.now();
  }

  async function poll() {
    try {
      const data = await api("api/view");
      if (!state.data || data.last_seq !== state.data.last_seq) render(data);
      document.body.dataset.error = "";
    } catch (err) {
      document.body.dataset.error = String(err);
    }
    setTimeout(poll, POLL_MS);
  }

  if (STATIC) render(STATIC); else poll();
})();
