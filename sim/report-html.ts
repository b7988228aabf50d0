/**
 * The demo's timeline as one self-contained HTML page (no network, no external files): the run's
 * figures, every phase as bars on a time axis (relative to the failure), and underneath the
 * traffic per 100 ms — fresh connections that succeeded or failed and long-lived flows that
 * answered. The data is embedded as JSON; a small script draws the SVG chart and the phase table.
 */
import type { Mark } from './timeline.ts';
import { PHASES } from './timeline.ts';

export interface ReportData {
  title: string;
  scenario: string;
  /** Epoch ms of the failure (time zero). */
  zero: number;
  marks: Mark[];
  series: { t: number; ok: number; failed: number; replies: number }[];
  result: Record<string, unknown>;
}

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2733; }
h1 { font-size: 20px; margin: 0 0 4px; }
.sub { color: #5b6b7b; margin-bottom: 16px; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 16px; }
.figure { border: 1px solid #d6dde5; border-radius: 6px; padding: 8px 12px; min-width: 120px; }
.figure b { display: block; font-size: 18px; }
svg { border: 1px solid #d6dde5; border-radius: 6px; background: #fbfcfd; }
table { border-collapse: collapse; margin-top: 16px; }
td, th { border-bottom: 1px solid #e3e8ee; padding: 4px 10px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #b42318; } .good { color: #067647; }
`;

const SCRIPT = `
const data = JSON.parse(document.getElementById('data').textContent);
const PHASES = data.phases;
const colors = { failure: '#b42318', detection: '#dc6803', lease: '#7a5af8', ec2: '#2e90fa', eni: '#0ba5ec', eip: '#16b364', role: '#66c61c', traffic: '#099250', sessions: '#087443', done: '#344054' };
const rel = (t) => (t - data.zero) / 1000;
// From 3 s before the failure: what set the deployment up is not part of the picture.
const marks = data.marks.filter((m) => m.phase !== 'setup' && rel(m.at) >= -3);
const lastMark = Math.max(...marks.map((m) => rel(m.at + (m.ms || 0))), 1);
const x0 = Math.min(-2, ...marks.map((m) => rel(m.at))), x1 = lastMark + 2;
const W = 1000, left = 110, right = 20, laneH = 22;
const lanes = PHASES.filter((p) => p !== 'setup' && marks.some((m) => m.phase === p));
const chartTop = 30 + lanes.length * laneH + 30, chartH = 140, H = chartTop + chartH + 40;
const X = (s) => left + ((s - x0) / (x1 - x0)) * (W - left - right);
const NS = 'http://www.w3.org/2000/svg';
const svg = document.getElementById('chart');
svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
svg.setAttribute('width', W); svg.setAttribute('height', H);
function el(name, attrs, text) { const e = document.createElementNS(NS, name); for (const k in attrs) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text; svg.appendChild(e); return e; }
const step = x1 - x0 > 40 ? 5 : x1 - x0 > 15 ? 2 : 1;
for (let s = Math.ceil(x0 / step) * step; s <= x1; s += step) {
  el('line', { x1: X(s), x2: X(s), y1: 20, y2: H - 30, stroke: s === 0 ? '#b42318' : '#e3e8ee' });
  el('text', { x: X(s), y: H - 12, 'text-anchor': 'middle', 'font-size': 11, fill: '#5b6b7b' }, s + ' s');
}
lanes.forEach((p, i) => {
  const y = 30 + i * laneH;
  el('text', { x: left - 8, y: y + 14, 'text-anchor': 'end', 'font-size': 12 }, p);
  for (const m of marks.filter((m) => m.phase === p)) {
    const a = X(rel(m.at)), b = X(rel(m.at + (m.ms || 0)));
    const r = el('rect', { x: a, y: y + 3, width: Math.max(3, b - a), height: laneH - 6, rx: 2, fill: colors[p] || '#667085', 'data-phase': p });
    const t = document.createElementNS(NS, 'title'); t.textContent = m.label + (m.ms !== undefined ? ' (' + m.ms + ' ms)' : '') + ' at ' + rel(m.at).toFixed(2) + ' s'; r.appendChild(t);
  }
});
const series = data.series.filter((b) => rel(b.t) >= x0 && rel(b.t) <= x1);
const peak = Math.max(1, ...series.map((b) => b.ok + b.failed + b.replies));
el('text', { x: left - 8, y: chartTop + 12, 'text-anchor': 'end', 'font-size': 12 }, 'per 100 ms');
el('text', { x: left - 8, y: chartTop + 28, 'text-anchor': 'end', 'font-size': 11, fill: '#5b6b7b' }, 'max ' + peak);
const bw = Math.max(1, X(x0 + 0.1) - X(x0) - 0.5);
for (const b of series) {
  const base = chartTop + chartH;
  let y = base;
  for (const [k, c] of [['replies', '#84caff'], ['ok', '#16b364'], ['failed', '#b42318']]) {
    const h = (b[k] / peak) * chartH;
    if (h > 0) { el('rect', { x: X(rel(b.t)), y: y - h, width: bw, height: h, fill: c, class: 'bucket-' + k }); y -= h; }
  }
}
el('text', { x: W - right, y: chartTop - 6, 'text-anchor': 'end', 'font-size': 11, fill: '#5b6b7b' }, 'blue: long-lived flows answering · green: new connections ok · red: failed');
const tbody = document.querySelector('#phases tbody');
for (const p of lanes) {
  const ms = marks.filter((m) => m.phase === p);
  const first = Math.min(...ms.map((m) => rel(m.at)));
  const last = Math.max(...ms.map((m) => rel(m.at + (m.ms || 0))));
  const tr = document.createElement('tr');
  tr.dataset.phase = p;
  for (const [v, cls] of [[p, ''], [first.toFixed(2) + ' s', 'num'], [((last - first) * 1000).toFixed(0) + ' ms', 'num'], [ms.map((m) => m.label + (m.ms !== undefined ? ' (' + m.ms + ' ms)' : '')).join('; '), '']]) {
    const td = document.createElement('td'); td.textContent = v; if (cls) td.className = cls; tr.appendChild(td);
  }
  tbody.appendChild(tr);
}
document.body.dataset.rendered = 'yes';
`;

const escapeHtml = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

export function renderReport(d: ReportData): string {
  const json = JSON.stringify({ ...d, phases: PHASES }).replace(/</g, '\\u003c');
  const figures = Object.entries(d.result)
    .filter(([, v]) => typeof v === 'number' || typeof v === 'boolean')
    .map(([k, v]) => `<div class="figure">${escapeHtml(k)}<b>${escapeHtml(String(v))}</b></div>`)
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(d.title)}</title><style>${STYLE}</style></head>
<body>
<h1>${escapeHtml(d.title)}</h1>
<div class="sub">${escapeHtml(d.scenario)} · ${escapeHtml(new Date(d.zero).toISOString())} · time 0 is the failure</div>
<div class="figures">${figures}</div>
<svg id="chart" role="img" aria-label="failover timeline"></svg>
<table id="phases"><thead><tr><th>phase</th><th>first at</th><th>span</th><th>what</th></tr></thead><tbody></tbody></table>
<script type="application/json" id="data">${json}</script>
<script>${SCRIPT}</script>
</body></html>
`;
}
