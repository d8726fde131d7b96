/**
 * Flame graph (root at the bottom) and icicle (root at the top) views of one profile.
 *
 * Zooming is instant on the tree already loaded (the default tree, root 0); when the zoomed
 * frame has folded ("other") nodes below it, the subtree is re-fetched with ?root=<id> so
 * the server re-thresholds it against the frame's own total, and drawn when it arrives.
 * The zoomed frame's server id is in the URL (zoom=<id>).
 */
import { getJSON, apiUrl, isAbort, RequestSlot } from "../api.js";
import { parseSearch } from "../model/api.js";
import { formatDuration, formatPercent, displayText } from "../model/format.js";
import { h, clear, append } from "../ui/dom.js";
import { FlameGraph } from "../ui/flamegraph.js";
import { showTooltip, hideTooltip } from "../ui/tooltip.js";
import { mark, markAfterPaint, debugState } from "../ui/debug.js";
import { setStatus } from "../ui/chrome.js";

/** True when the subtree of `index` in `tree` holds a folded "other" node. */
function hasFoldedBelow(tree, index) {
  const end = tree.subtreeEnd(index);
  for (let i = index; i < end; i++) if (tree.nodes[i].kind === "other") return true;
  return false;
}

function makeView(id, label, orientation) {
  return {
    id,
    label,
    mount(container, ctx) {
      return new FlameView(container, ctx, orientation);
    },
  };
}

export const flameView = makeView("flame", "Flame graph", "flame");
export const icicleView = makeView("icicle", "Icicle", "icicle");

class FlameView {
  constructor(container, ctx, orientation) {
    this.ctx = ctx;
    this.orientation = orientation;
    this.crumbs = h("nav", { class: "breadcrumb", id: "breadcrumb", aria: { label: "Zoom path" } });
    this.message = h("div", { class: "view-message", role: "status" });
    this.graphBox = h("div", { class: "flame-box", id: "flame", data: { orientation } });
    this.scroller = h("div", { class: "flame-scroll" }, this.graphBox);
    append(container, this.crumbs, this.message, this.scroller);
    this.graph = new FlameGraph(this.graphBox, {
      orientation,
      onClick: (node) => this.onClick(node),
      onHover: (node, event) => showTooltip(event, ctx.tooltipFor(node, this.tree, this.baseTotal())),
      onLeave: () => hideTooltip(),
    });
    this.slot = new RequestSlot();
    this.searchSlot = new RequestSlot();
    this.tree = null;
    this.focus = 0;
    debugState().flame = {
      centerOfName: (name) => this.graph.centerOfName(name),
      centerOfDepth: (depth) => this.graph.centerOfDepth(depth),
    };
    this.load();
  }

  unmount() {
    this.slot.cancel();
    this.searchSlot.cancel();
    hideTooltip();
    this.graph.destroy();
  }

  update(ctx, changed) {
    this.ctx = ctx;
    if (changed.has("threads") || changed.has("states") || changed.has("window") || changed.has("zoom") || changed.has("*")) {
      this.load();
    } else if (changed.has("color") || changed.has("searchResult") || changed.has("search") || changed.has("regex")) {
      this.draw();
    }
  }

  onKey(event) {
    if (event.key === "Escape" && this.tree) {
      const node = this.tree.nodes[this.focus];
      if (node && node.parent >= 0) this.zoomTo(this.tree.nodes[node.parent]);
    }
  }

  baseTotal() {
    return this.tree ? this.tree.nodes[0].total : 0;
  }

  /** Load what the state asks for: the default tree, zoomed on state.zoom. */
  load() {
    const { state } = this.ctx;
    const zoomId = state.zoom ? Number(state.zoom) : 0;
    this.graphBox.classList.add("loading");
    this.slot.run(async (signal) => {
      const base = await this.ctx.baseTree(signal);
      let tree = base;
      let focus = zoomId ? base.indexOfId(zoomId) : base.info.focus;
      if (zoomId && (focus < 0 || hasFoldedBelow(base, focus))) {
        if (focus >= 0) this.show(base, focus); // instant zoom while the detailed subtree loads
        tree = await this.ctx.zoomTree(zoomId, signal);
        focus = tree.info.focus;
      }
      this.show(tree, focus);
    }).catch((err) => {
      if (isAbort(err)) return;
      this.graphBox.classList.remove("loading");
      this.message.textContent = err.status === 404 && zoomId
        ? `The zoomed frame (node ${zoomId}) is not in this profile; showing everything.`
        : `Could not load the flame graph: ${err.message}`;
      this.message.classList.add("error");
      if (err.status === 404 && zoomId) {
        setStatus(this.message.textContent, true);
        this.ctx.setState({ zoom: null });
      }
    });
  }

  show(tree, focus) {
    this.tree = tree;
    this.focus = focus;
    this.graphBox.classList.remove("loading");
    this.message.classList.remove("error");
    this.message.textContent = "";
    if (tree.nodes[tree.info.focus].total === 0) {
      this.message.textContent = "No samples match the current filters (threads, states, time window).";
    } else {
      this.maybeSearchZoomed();
    }
    this.draw();
  }

  /** The node ids to highlight: from the page's search, or a search rooted at a re-fetched subtree. */
  matchedFor(tree) {
    const { state } = this.ctx;
    if (!state.search) return null;
    const rooted = tree.info.rootId && this.zoomSearch && this.zoomSearch.rootId === tree.info.rootId ? this.zoomSearch.result : null;
    const result = rooted || this.ctx.search;
    if (!result) return null;
    const matched = new Uint8Array(tree.size);
    let count = 0;
    for (const node of tree.nodes) {
      if (result.nodeIds.has(node.id) && !node.ancestorOnly) {
        matched[node.index] = 1;
        count++;
      }
    }
    return { matched, count, result };
  }

  maybeSearchZoomed() {
    const { state } = this.ctx;
    const tree = this.tree;
    if (!state.search || !tree.info.rootId) return;
    if (this.zoomSearch && this.zoomSearch.rootId === tree.info.rootId && this.zoomSearch.q === state.search) return;
    const params = this.ctx.filters();
    params.set("q", state.search);
    if (state.regex) params.set("regex", "1");
    params.set("root", String(tree.info.rootId));
    const rootId = tree.info.rootId;
    this.searchSlot.run((signal) => getJSON(apiUrl(`/profiles/${this.ctx.id}/search`, params), { signal }))
      .then((json) => {
        this.zoomSearch = { rootId, q: state.search, result: parseSearch(json) };
        this.draw();
      })
      .catch(() => {});
  }

  draw() {
    if (!this.tree) return;
    const tree = this.tree;
    const search = this.matchedFor(tree);
    const t0 = performance.now();
    const count = this.graph.draw(tree, {
      focus: this.focus,
      colorOf: this.ctx.colorOf(tree, this.focus),
      split: this.ctx.split,
      matched: search ? search.matched : null,
      searching: Boolean(this.ctx.state.search && search),
      matchedCount: search ? search.count : 0,
    });
    if (this.orientation === "flame") {
      // Root at the bottom: keep the bottom (the root and the zoomed frame) in view.
      this.scroller.scrollTop = this.scroller.scrollHeight;
    } else if (this.lastFocus !== this.focus) {
      this.scroller.scrollTop = 0;
    }
    this.lastFocus = this.focus;
    this.graphBox.dataset.totalNs = String(tree.nodes[tree.info.focus].total);
    this.graphBox.dataset.treeRoot = String(tree.info.rootId || 0);
    this.renderCrumbs();
    mark("flame-drawn", { nodes: count, ms: performance.now() - t0, focus: tree.nodes[this.focus].id });
    markAfterPaint("flame-painted", { nodes: count, focus: tree.nodes[this.focus].id, treeRoot: tree.info.rootId || 0 });
  }

  renderCrumbs() {
    const tree = this.tree;
    const nav = clear(this.crumbs);
    const path = tree.pathTo(this.focus);
    const base = tree.nodes[0].total;
    path.forEach((index, i) => {
      const node = tree.nodes[index];
      if (i) nav.appendChild(h("span", { class: "sep", aria: { hidden: "true" } }, "\u203a"));
      const last = i === path.length - 1;
      const text = i === 0 ? "all" : displayText(node.name, 60);
      const item = last
        ? h("span", { class: "crumb current", aria: { current: "true" }, data: { id: node.id } }, text)
        : h("button", { type: "button", class: "crumb", data: { id: node.id }, on: { click: () => this.zoomTo(node) } }, text);
      nav.appendChild(item);
    });
    const focus = tree.nodes[this.focus];
    if (this.focus !== 0) {
      nav.appendChild(h("span", { class: "crumb-info" }, ` ${formatDuration(focus.total)} (${formatPercent(base ? focus.total / base : 0)})`));
    }
  }

  zoomTo(node) {
    const id = node.kind === "other" ? null : node.id;
    this.ctx.setState({ zoom: id ? String(id) : null });
  }

  onClick(node) {
    hideTooltip();
    mark("zoom-click", { id: node.id });
    if (node.kind === "other") {
      // The folded remainder: zoom into its parent, re-fetched so the small frames appear.
      const parent = this.tree.nodes[node.parent];
      this.ctx.setState({ zoom: parent.id ? String(parent.id) : null });
      return;
    }
    this.ctx.setState({ zoom: node.id && node.index !== 0 ? String(node.id) : null });
  }
}
