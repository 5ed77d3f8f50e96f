// A bar chart of amounts per day, in SVG built with the DOM (no library).

import { h, svg } from './dom.js';
import { fromMicros } from './format.js';

const W = 900;
const H = 210;
const M = { top: 12, right: 10, bottom: 30, left: 78 };

/** A UTC day (YYYY-MM-DD) as the user's locale writes dates. */
function dayLabel(day) {
  const date = new Date(`${day}T00:00:00Z`);
  return Number.isNaN(date.getTime()) ? day : date.toLocaleDateString(undefined, { timeZone: 'UTC', month: 'short', day: 'numeric' });
}

/**
 * `points`: [{day, micros (BigInt)}], oldest first, without gaps. `caption`: what it
 * shows. Answers a <figure> with the chart and the same figures as a table.
 */
export function dailyBars(points, { caption, testid }) {
  const max = points.reduce((m, p) => (p.micros > m ? p.micros : m), 0n);
  const top = niceCeiling(max);
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const step = plotW / Math.max(points.length, 1);
  const barW = Math.max(1, Math.min(28, step * 0.7));
  const y = (micros) => M.top + plotH - (top > 0n ? Number((micros > 0n ? micros : 0n) * 10000n / top) / 10000 : 0) * plotH;

  const grid = [0n, top / 2n, top].map((v) => [
    svg('line', { class: 'grid', x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }),
    svg('text', { x: M.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, fromMicros(v)),
  ]);
  const labelEvery = Math.max(1, Math.ceil(points.length / 8));
  const bars = points.map((p, i) => {
    const x = M.left + step * i + (step - barW) / 2;
    const top_ = y(p.micros);
    const height = Math.max(p.micros > 0n ? 1 : 0, M.top + plotH - top_);
    return [
      svg('rect', { class: 'bar', x, y: M.top + plotH - height, width: barW, height, 'data-day': p.day },
        svg('title', {}, `${dayLabel(p.day)}: ${fromMicros(p.micros)} USDC`)),
      (points.length - 1 - i) % labelEvery === 0
        ? svg('text', { x: x + barW / 2, y: H - 10, 'text-anchor': 'middle' }, dayLabel(p.day))
        : null,
    ];
  });
  const total = points.reduce((s, p) => s + p.micros, 0n);
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${caption}: ${fromMicros(total)} USDC over ${points.length} days`, 'data-testid': testid },
    grid,
    svg('line', { class: 'axis', x1: M.left, x2: W - M.right, y1: M.top + plotH, y2: M.top + plotH }),
    bars);
  const rows = points.filter((p) => p.micros !== 0n).reverse();
  return h('figure', { class: 'chart' },
    h('div', { class: 'chart-scroll', role: 'region', 'aria-label': `${caption} (chart)`, tabindex: '0' }, chart),
    h('figcaption', {}, `${caption} (UTC days). Total ${fromMicros(total)} USDC.`),
    h('details', {},
      h('summary', {}, 'The figures'),
      rows.length
        ? h('div', { class: 'table-wrap', role: 'region', 'aria-label': `${caption} (table)`, tabindex: '0' },
          h('table', {},
            h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Day (UTC)'), h('th', { scope: 'col', class: 'num' }, 'Earned, USDC'))),
            h('tbody', {}, rows.map((p) => h('tr', {}, h('td', {}, p.day), h('td', { class: 'num' }, fromMicros(p.micros)))))))
        : h('p', { class: 'empty' }, 'Nothing earned in these days.')));
}

/** A round number at or above `micros`, so the axis reads well. */
function niceCeiling(micros) {
  if (micros <= 0n) return 1000n; // 0.001 USDC: an empty chart still has an axis
  let unit = 1n;
  while (unit * 10n <= micros) unit *= 10n;
  for (const m of [1n, 2n, 5n, 10n]) if (unit * m >= micros) return unit * m;
  return unit * 10n;
}

/** Days from the first with earnings (or `days` ago) to today, gaps filled with zero. */
export function fillDays(entries, days = 30) {
  const byDay = new Map(entries.map((e) => [e.day, BigInt(e.earned_micros)]));
  const today = new Date();
  const end = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate());
  const firstKnown = entries.length ? Date.parse(`${entries[0].day}T00:00:00Z`) : end;
  const start = Math.max(Math.min(firstKnown, end - (days - 1) * 86400000), end - 365 * 86400000);
  const out = [];
  for (let t = start; t <= end; t += 86400000) {
    const day = new Date(t).toISOString().slice(0, 10);
    out.push({ day, micros: byDay.get(day) ?? 0n });
  }
  return out;
}
