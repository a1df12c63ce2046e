// The histogram of the window, stacked by technology. Dragging across it (or
// clicking one bar) narrows the window to the selected span.

import { el, formatCount, formatShortTime } from './format.js';

const SVG = 'http://www.w3.org/2000/svg';
const HEIGHT = 140;
const AXIS = 18;
/** Room above the tallest bar for the scale label. */
const TOP = 16;
const PALETTE = ['#2563eb', '#16a34a', '#d97706', '#9333ea', '#dc2626', '#0891b2', '#db2777', '#65a30d', '#64748b'];

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

/** A stable colour per technology, so postgres keeps its colour between loads. */
const colours = new Map();
function colourOf(key) {
  if (!colours.has(key)) colours.set(key, PALETTE[colours.size % PALETTE.length]);
  return colours.get(key);
}

export class Histogram {
  constructor(root, { onSelect }) {
    this.root = root;
    this.onSelect = onSelect;
    this.buckets = [];
    new ResizeObserver(() => this.draw()).observe(root);
  }

  show(buckets) {
    this.buckets = (buckets || []).map((b) => ({
      start: Date.parse(b.datetime),
      count: Number(b.count) || 0,
      parts: (b.buckets || []).map((p) => ({ key: p.key || '(none)', count: Number(p.count) || 0 })),
    }));
    this.draw();
  }

  draw() {
    const width = this.root.clientWidth;
    this.root.replaceChildren();
    if (!width || this.buckets.length === 0) return;
    const n = this.buckets.length;
    const step = n > 1 ? this.buckets[1].start - this.buckets[0].start : 3600e3;
    const from = this.buckets[0].start;
    const to = this.buckets[n - 1].start + step;
    const max = Math.max(1, ...this.buckets.map((b) => b.count));
    const plot = HEIGHT - AXIS;
    const barWidth = width / n;
    const x = (t) => ((t - from) / (to - from)) * width;
    const time = (px) => from + (Math.min(Math.max(px, 0), width) / width) * (to - from);

    const total = this.buckets.reduce((sum, b) => sum + b.count, 0);
    const chart = svg('svg', {
      width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: 'img', class: 'histogram-chart',
      'aria-label': `${formatCount(total)} sessions from ${formatShortTime(new Date(from))} to ${formatShortTime(new Date(to))}, in ${n} bars. Drag across the chart to narrow the window.`,
    });
    const technologies = new Set();
    this.buckets.forEach((bucket, i) => {
      const group = svg('g', { 'data-start': new Date(bucket.start).toISOString(), 'data-count': bucket.count });
      const title = svg('title');
      title.textContent = `${formatShortTime(new Date(bucket.start))}: ${formatCount(bucket.count)} sessions`
        + bucket.parts.map((p) => `\n${p.key}: ${formatCount(p.count)}`).join('');
      group.append(title);
      let top = plot;
      const parts = bucket.parts.length ? bucket.parts : [{ key: '', count: bucket.count }];
      for (const part of parts) {
        if (!part.count) continue;
        technologies.add(part.key);
        const h = (part.count / max) * (plot - TOP);
        top -= h;
        group.append(svg('rect', {
          x: i * barWidth + 0.5, y: top, width: Math.max(barWidth - 1, 1), height: h,
          fill: part.key ? colourOf(part.key) : PALETTE[0], class: 'bar',
        }));
      }
      chart.append(group);
    });
    chart.append(svg('line', { x1: 0, x2: width, y1: plot + 0.5, y2: plot + 0.5, class: 'axis' }));
    const ticks = Math.max(2, Math.min(6, Math.floor(width / 160)));
    for (let i = 0; i < ticks; i++) {
      const t = from + ((to - from) * i) / ticks;
      const label = svg('text', { x: x(t) + 2, y: HEIGHT - 4, class: 'tick' });
      label.textContent = formatShortTime(new Date(t));
      chart.append(label);
    }
    const maxLabel = svg('text', { x: width - 4, y: 12, class: 'tick', 'text-anchor': 'end' });
    maxLabel.textContent = `max ${formatCount(max)}`;
    chart.append(maxLabel);

    const selection = svg('rect', { x: 0, y: 0, width: 0, height: plot, class: 'selection', visibility: 'hidden' });
    chart.append(selection);
    let anchor = null;
    const px = (event) => event.clientX - chart.getBoundingClientRect().left;
    chart.addEventListener('pointerdown', (event) => {
      anchor = px(event);
      chart.setPointerCapture(event.pointerId);
      selection.setAttribute('visibility', 'visible');
      selection.setAttribute('x', anchor);
      selection.setAttribute('width', 0);
    });
    chart.addEventListener('pointermove', (event) => {
      if (anchor === null) return;
      const now = px(event);
      selection.setAttribute('x', Math.min(anchor, now));
      selection.setAttribute('width', Math.abs(now - anchor));
    });
    chart.addEventListener('pointerup', (event) => {
      if (anchor === null) return;
      const end = px(event);
      const start = anchor;
      anchor = null;
      selection.setAttribute('visibility', 'hidden');
      if (Math.abs(end - start) < 4) {
        // A click selects the bar under the pointer.
        const i = Math.min(n - 1, Math.max(0, Math.floor(start / barWidth)));
        this.onSelect(new Date(this.buckets[i].start), new Date(this.buckets[i].start + step));
      } else {
        this.onSelect(new Date(time(Math.min(start, end))), new Date(time(Math.max(start, end))));
      }
    });
    chart.addEventListener('pointercancel', () => {
      anchor = null;
      selection.setAttribute('visibility', 'hidden');
    });
    this.root.append(chart);

    const legend = el('ul', { class: 'legend', 'aria-label': 'Technologies' });
    for (const key of [...technologies].filter(Boolean).sort()) {
      legend.append(el('li', {}, el('span', { class: 'swatch', 'data-colour': colourOf(key) }), key));
    }
    this.root.append(legend);
    // Inline style attributes are blocked by the policy; the CSSOM is not.
    for (const swatch of legend.querySelectorAll('.swatch')) swatch.style.background = swatch.dataset.colour;
  }
}
