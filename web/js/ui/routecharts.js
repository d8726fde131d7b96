/**
 * Small SVG charts of the routes view (bins and time buckets number at most a few hundred):
 *
 *   drawHistogram(container, bins, { marks })       latency histogram, log-scale x (ms)
 *   drawTimeChart(container, { domain, series, dots, hlines, yLog, yFormat, onBrush, onDot })
 *                                                     lines (and areas) over time, dots for
 *                                                     single requests, brushing a time range
 *   drawLoadChart(container, curve)                   latency percentiles against utilisation,
 *                                                     with the knee, 100% and the peak marked
 *
 * d3 builds the SVG; every label is set with .text() (data is hostile). The container gets
 * data-bars / data-points / data-dots (what was drawn, for tests) and keeps its chart the
 * width of the container: `keepWidth(container, redraw)` redraws on resize.
 */
import { d3 } from "../d3.js";
import { formatDuration } from "../model/format.js";
import { showTooltip, hideTooltip } from "./tooltip.js";

const MARGIN = { top: 12, right: 16, bottom: 24, left: 64 };

/** "12.3 ms", "1.20 s" for milliseconds. */
export function formatMs(ms) {
  return formatDuration(ms * 1e6);
}

function frame(container, height) {
  d3.select(container).selectAll("svg").remove();
  const width = Math.max(260, Math.floor(container.clientWidth || 480));
  const svg = d3.select(container).append("svg")
    .attr("class", "route-chart").attr("width", width).attr("height", height).attr("role", "img");
  return { svg, width, height, left: MARGIN.left, right: width - MARGIN.right, top: MARGIN.top, bottom: height - MARGIN.bottom };
}

function empty(box, text) {
  box.svg.append("text").attr("class", "chart-empty").attr("x", (box.left + box.right) / 2).attr("y", (box.top + box.bottom) / 2)
    .attr("text-anchor", "middle").text(text);
}

/** Tick values for a log axis in ms: 1-2-5 steps inside the domain, at most `max`. */
export function logTicks(lo, hi, max = 7) {
  const ticks = [];
  for (let e = Math.floor(Math.log10(lo)) - 1; e <= Math.ceil(Math.log10(hi)) + 1; e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) ticks.push(v);
    }
  }
  if (ticks.length <= max) return ticks;
  const powers = ticks.filter((v) => Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-9);
  return powers.length >= 2 ? powers : [lo, hi];
}

/**
 * Latency histogram: `bins` [{low, high, count}] (ms, log-spaced), `marks` [{label, value (ms), className}]
 * drawn as vertical rules (P50, P95, ...). Hovering a bar shows its range and count.
 */
export function drawHistogram(container, bins, { marks = [], height = 190 } = {}) {
  const box = frame(container, height);
  container.dataset.bars = "0";
  if (!bins.length) return empty(box, "no requests in this window");
  const lo = Math.max(1e-3, bins[0].low);
  const hi = Math.max(lo * 1.5, bins[bins.length - 1].high);
  const x = d3.scaleLog().domain([lo, hi]).range([box.left, box.right]);
  const y = d3.scaleLinear().domain([0, d3.max(bins, (b) => b.count) || 1]).nice().range([box.bottom, box.top]);
  const drawn = bins.filter((b) => b.count > 0);
  box.svg.append("g").attr("class", "bars").selectAll("rect").data(drawn).join("rect")
    .attr("x", (b) => x(Math.max(lo, b.low)))
    .attr("width", (b) => Math.max(1, x(Math.max(b.high, b.low * 1.0001)) - x(Math.max(lo, b.low)) - 1))
    .attr("y", (b) => y(b.count))
    .attr("height", (b) => Math.max(1, box.bottom - y(b.count)))
    .on("mousemove", (event, b) => showTooltip(event, { title: `${formatMs(b.low)} \u2013 ${formatMs(b.high)}`, rows: [["Requests", String(b.count)]] }))
    .on("mouseleave", () => hideTooltip());
  container.dataset.bars = String(drawn.length);
  box.svg.append("g").attr("class", "axis").attr("transform", `translate(0,${box.bottom})`)
    .call(d3.axisBottom(x).tickValues(logTicks(lo, hi)).tickFormat((v) => formatMs(v)));
  box.svg.append("g").attr("class", "axis").attr("transform", `translate(${box.left},0)`)
    .call(d3.axisLeft(y).tickValues(y.ticks(4).filter(Number.isInteger)).tickFormat(d3.format("~s")));
  box.svg.append("text").attr("class", "axis-label").attr("transform", `translate(11,${(box.top + box.bottom) / 2}) rotate(-90)`)
    .attr("text-anchor", "middle").text("requests");
  const rules = box.svg.append("g").attr("class", "marks");
  marks.filter((m) => Number.isFinite(m.value) && m.value >= lo && m.value <= hi).forEach((m, i) => {
    const at = x(m.value);
    rules.append("line").attr("class", `mark ${m.className || ""}`).attr("x1", at).attr("x2", at).attr("y1", box.top).attr("y2", box.bottom);
    const flip = at > box.right - 30;
    rules.append("text").attr("class", `mark-label ${m.className || ""}`).attr("x", flip ? at - 3 : at + 3).attr("text-anchor", flip ? "end" : "start")
      .attr("y", box.top + 10 + (i % 3) * 11).text(m.label);
  });
}

/**
 * Values over time. `domain` [from, to] epoch s; `series` [{ name, className, points: [{t, v}],
 * area }] (t epoch s, bucket starts; `bucketS` centres them); `dots` [{ t, v, className, tip,
 * data }] single requests; `hlines` [{ value, label, className }]; `yLog` a log y axis;
 * `yFormat` the y tick format; `onBrush(from, to)` (epoch s) when a range is brushed;
 * `onDot(dot)` when a dot is clicked.
 */
export function drawTimeChart(container, spec) {
  const { domain, series = [], dots = [], hlines = [], yLog = false, yFormat = (v) => String(v), bucketS = 0, height = 210, yLabel = "", onBrush = null, onDot = null, yMin = null } = spec;
  const box = frame(container, height);
  const values = [...series.flatMap((s) => s.points.map((p) => p.v)), ...dots.map((d) => d.v), ...hlines.map((l) => l.value)].filter((v) => Number.isFinite(v));
  container.dataset.points = "0";
  container.dataset.dots = "0";
  if (!values.length || !(domain[1] > domain[0])) return empty(box, "no requests in this window");
  const x = d3.scaleTime().domain([new Date(domain[0] * 1000), new Date(domain[1] * 1000)]).range([box.left, box.right]);
  let y;
  if (yLog) {
    const positive = values.filter((v) => v > 0);
    const lo = Math.max(1e-3, d3.min(positive) || 1);
    const hi = Math.max(lo * 2, d3.max(positive) || 1);
    y = d3.scaleLog().domain([lo / 1.3, hi * 1.3]).range([box.bottom, box.top]).clamp(true);
  } else {
    y = d3.scaleLinear().domain([yMin ?? 0, d3.max(values) * 1.08 || 1]).nice().range([box.bottom, box.top]);
  }
  const at = (t) => x(new Date((t + bucketS / 2) * 1000));
  const plot = box.svg.append("g").attr("class", "plot");
  const brushLayer = box.svg.append("g").attr("class", "brush");
  let points = 0;
  for (const s of series) {
    const pts = s.points.filter((p) => Number.isFinite(p.v) && (!yLog || p.v > 0));
    points += pts.length;
    if (s.area) {
      plot.append("path").attr("class", `area ${s.className || ""}`)
        .attr("d", d3.area().x((p) => at(p.t)).y0(box.bottom).y1((p) => y(p.v)).curve(d3.curveStepAfter)(pts));
    }
    plot.append("path").attr("class", `line ${s.className || ""}`)
      .attr("d", d3.line().x((p) => at(p.t)).y((p) => y(p.v)).curve(s.area ? d3.curveStepAfter : d3.curveMonotoneX)(pts));
    if (pts.length <= 2) {
      plot.append("g").selectAll("circle").data(pts).join("circle").attr("class", `point ${s.className || ""}`)
        .attr("cx", (p) => at(p.t)).attr("cy", (p) => y(p.v)).attr("r", 2.5);
    }
  }
  for (const line of hlines) {
    plot.append("line").attr("class", `hline ${line.className || ""}`).attr("x1", box.left).attr("x2", box.right)
      .attr("y1", y(line.value)).attr("y2", y(line.value));
    plot.append("text").attr("class", "hline-label").attr("x", box.right - 4).attr("y", y(line.value) - 4).attr("text-anchor", "end").text(line.label);
  }
  container.dataset.points = String(points);
  box.svg.append("g").attr("class", "axis").attr("transform", `translate(0,${box.bottom})`).call(d3.axisBottom(x).ticks(Math.max(2, Math.floor((box.right - box.left) / 90))));
  box.svg.append("g").attr("class", "axis").attr("transform", `translate(${box.left},0)`)
    .call(yLog ? d3.axisLeft(y).tickValues(logTicks(y.domain()[0], y.domain()[1], 6)).tickFormat(yFormat) : d3.axisLeft(y).ticks(4).tickFormat(yFormat));
  if (yLabel) {
    box.svg.append("text").attr("class", "axis-label").attr("transform", `translate(11,${(box.top + box.bottom) / 2}) rotate(-90)`)
      .attr("text-anchor", "middle").text(yLabel);
  }
  if (onBrush) {
    const brush = d3.brushX().extent([[box.left, box.top], [box.right, box.bottom]]).on("end", (event) => {
      if (!event.selection || !event.sourceEvent) return;
      const [a, b] = event.selection;
      if (b - a < 4) return;
      onBrush(x.invert(a).getTime() / 1000, x.invert(b).getTime() / 1000);
    });
    brushLayer.call(brush);
  }
  const shown = dots.filter((d) => Number.isFinite(d.v) && (!yLog || d.v > 0) && d.t >= domain[0] && d.t <= domain[1]);
  box.svg.append("g").attr("class", "dots").selectAll("circle").data(shown).join("circle")
    .attr("class", (d) => `dot ${d.className || ""}`)
    .attr("cx", (d) => x(new Date(d.t * 1000))).attr("cy", (d) => y(d.v)).attr("r", 3.5)
    .on("mousemove", (event, d) => d.tip && showTooltip(event, d.tip))
    .on("mouseleave", () => hideTooltip())
    .on("click", (event, d) => onDot && onDot(d));
  container.dataset.dots = String(shown.length);
}

/** The x position (utilisation) a load band is drawn at: its middle, or a little past an open band's low edge. */
function bandMiddle(level) {
  return level.high === null ? level.low * 1.1 : (level.low + level.high) / 2;
}

/**
 * Latency against load (a parsed /api/routes/load): P50/P95/P99 per utilisation band (log y),
 * rules at 100% (every worker busy), at the knee and at the observed peak. The container gets
 * data-points (bands drawn) and data-knee (the knee's utilisation, or "none").
 */
export function drawLoadChart(container, curve, { height = 230 } = {}) {
  const box = frame(container, height);
  container.dataset.points = "0";
  container.dataset.knee = curve && curve.knee !== null ? String(curve.knee) : "none";
  const levels = curve ? curve.levels.filter((l) => l.p50 > 0 && l.p99 > 0) : [];
  if (!levels.length) return empty(box, "no requests in this window");
  const xMax = Math.max(1.1, ...levels.map((l) => (l.high === null ? l.low * 1.25 : l.high)), (curve.peak || 0) * 1.05);
  const x = d3.scaleLinear().domain([0, xMax]).range([box.left, box.right]);
  const lo = Math.max(1e-3, d3.min(levels, (l) => l.p50));
  const hi = Math.max(lo * 2, d3.max(levels, (l) => l.p99));
  const y = d3.scaleLog().domain([lo / 1.3, hi * 1.3]).range([box.bottom, box.top]).clamp(true);
  const rules = box.svg.append("g").attr("class", "marks");
  const rule = (value, label, className, row) => {
    if (!(value >= 0 && value <= xMax)) return;
    const at = x(value);
    rules.append("line").attr("class", `mark ${className}`).attr("x1", at).attr("x2", at).attr("y1", box.top).attr("y2", box.bottom);
    const flip = at > box.right - 90;
    rules.append("text").attr("class", `mark-label ${className}`).attr("x", flip ? at - 3 : at + 3).attr("text-anchor", flip ? "end" : "start")
      .attr("y", box.top + 10 + row * 11).text(label);
  };
  rule(1, "all workers busy", "capacity", 0);
  if (curve.knee !== null) rule(curve.knee, `knee: P99 ${formatMs(curve.kneeP99)}`, "knee", 1);
  rule(curve.peak, `peak ${Math.round(curve.peak * 100)}%`, "peak", 2);
  const plot = box.svg.append("g").attr("class", "plot");
  for (const [key, className] of [["p50", "p50"], ["p95", "p95"], ["p99", "p99"]]) {
    plot.append("path").attr("class", `line ${className}`)
      .attr("d", d3.line().x((l) => x(bandMiddle(l))).y((l) => y(l[key])).curve(d3.curveMonotoneX)(levels));
    plot.append("g").selectAll("circle").data(levels).join("circle").attr("class", `point ${className}`)
      .attr("cx", (l) => x(bandMiddle(l))).attr("cy", (l) => y(l[key])).attr("r", 3)
      .on("mousemove", (event, l) => showTooltip(event, {
        title: l.high === null ? `${Math.round(l.low * 100)}% or more busy at arrival` : `${Math.round(l.low * 100)}\u2013${Math.round(l.high * 100)}% busy at arrival`,
        rows: [["Requests", String(l.requests)], ["P50", formatMs(l.p50)], ["P95", formatMs(l.p95)], ["P99", formatMs(l.p99)]],
      }))
      .on("mouseleave", () => hideTooltip());
  }
  container.dataset.points = String(levels.length);
  box.svg.append("g").attr("class", "axis").attr("transform", `translate(0,${box.bottom})`)
    .call(d3.axisBottom(x).ticks(Math.max(2, Math.floor((box.right - box.left) / 70))).tickFormat((v) => `${Math.round(v * 100)}%`));
  box.svg.append("g").attr("class", "axis").attr("transform", `translate(${box.left},0)`)
    .call(d3.axisLeft(y).tickValues(logTicks(y.domain()[0], y.domain()[1], 6)).tickFormat(formatMs));
  box.svg.append("text").attr("class", "axis-label").attr("transform", `translate(11,${(box.top + box.bottom) / 2}) rotate(-90)`)
    .attr("text-anchor", "middle").text("latency");
}

/** Redraw `draw()` when the container's width changes; returns a function that stops it. */
export function keepWidth(container, draw) {
  let width = container.clientWidth;
  const observer = new ResizeObserver(() => {
    if (Math.abs(container.clientWidth - width) < 2) return;
    width = container.clientWidth;
    draw();
  });
  observer.observe(container);
  return () => observer.disconnect();
}
