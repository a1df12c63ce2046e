// The histogram of the window, stacked by technology. Dragging across it (or
// clicking one bar) narrows the window to the selected span. Bars count
// sessions by start time; a session that started before the window counts in
// the first bar (ListSessionAggregations adds up to the matching sessions).

import { el, formatCount, formatShortTime, sessionCount } from './format.js';

const SVG = 'http://www.w3.org/2000/svg';
const HEIGHT = 140;
const AXIS = 18;
/** Room above the tallest bar for the scale label. */
const TOP = 16;
const FIRST_BAR_NOTE = 'The first bar also counts sessions that started before the window and were still active in it.';
/** A bar counts the sessions that started in it; its window, chosen, holds every session active in it too. */
const WINDOW_NOTE = 'Chosen as the window, a bar also shows the sessions that started earlier and were still active in it.';
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
    /** True while a drag is under way; redraws wait for its end, as the chart holds the pointer. */
    this.dragging = false;
    this.stale = false;
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
    if (this.dragging) {
      this.stale = true;
      return;
    }
    this.stale = false;
    const width = this.root.clientWidth;
    this.root.replaceChildren();
    const buckets = this.buckets;
    if (!width || buckets.length === 0) return;
    const n = buckets.length;
    const step = n > 1 ? buckets[1].start - buckets[0].start : 3600e3;
    const from = buckets[0].start;
    const to = buckets[n - 1].start + step;
    const highest = Math.max(0, ...buckets.map((b) => b.count));
    const max = Math.max(1, highest);
    const plot = HEIGHT - AXIS;
    const barWidth = width / n;
    const x = (t) => ((t - from) / (to - from)) * width;
    const time = (px) => from + (Math.min(Math.max(px, 0), width) / width) * (to - from);

    const total = buckets.reduce((sum, b) => sum + b.count, 0);
    const chart = svg('svg', {
      width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: 'img', class: 'histogram-chart',
      'aria-label': `${sessionCount(total)} from ${formatShortTime(new Date(from))} to ${formatShortTime(new Date(to))}, in ${n} bars. `
        + `${FIRST_BAR_NOTE} Drag across the chart to narrow the window.`,
    });
    const technologies = new Set();
    buckets.forEach((bucket, i) => {
      const group = svg('g', { 'data-start': new Date(bucket.start).toISOString(), 'data-count': bucket.count });
      const title = svg('title');
      title.textContent = `${formatShortTime(new Date(bucket.start))}: ${sessionCount(bucket.count)} started`
        + bucket.parts.map((p) => `\n${p.key}: ${formatCount(p.count)}`).join('')
        + (i === 0 ? `\n${FIRST_BAR_NOTE}` : `\n${WINDOW_NOTE}`);
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
    // Ticks on bar edges (whole intervals), never two with the same text: a
    // label has minutes only, so ticks between the edges of 1-minute bars repeat.
    const ticks = Math.max(2, Math.min(6, Math.floor(width / 160)));
    const stride = Math.max(1, Math.ceil(n / ticks));
    let previous = '';
    for (let i = 0; i < n; i += stride) {
      const text = formatShortTime(new Date(buckets[i].start));
      // Room for the label before the right edge (the scale label is above the bars).
      if (i > 0 && x(buckets[i].start) + 7 * text.length > width) break;
      if (text === previous) continue;
      previous = text;
      const label = svg('text', { x: x(buckets[i].start) + 2, y: HEIGHT - 4, class: 'tick' });
      label.textContent = text;
      chart.append(label);
    }
    // An empty window has no scale to give.
    const maxLabel = svg('text', { x: width - 4, y: 12, class: 'tick', 'text-anchor': 'end' });
    maxLabel.textContent = highest ? `max ${formatCount(highest)}` : 'No sessions in this window';
    chart.append(maxLabel);

    const selection = svg('rect', { x: 0, y: 0, width: 0, height: plot, class: 'selection', visibility: 'hidden' });
    chart.append(selection);
    let anchor = null;
    /** Where the pointer went down, for telling a tap from a vertical swipe. */
    let anchorY = 0;
    const px = (event) => event.clientX - chart.getBoundingClientRect().left;
    /** Escape during a drag cancels it, as in any drag a pointer makes. */
    const escape = (event) => {
      if (event.key !== 'Escape' || anchor === null) return;
      event.preventDefault();
      abandon();
    };
    const finish = () => {
      anchor = null;
      this.dragging = false;
      selection.setAttribute('visibility', 'hidden');
      document.removeEventListener('keydown', escape, true);
    };
    chart.addEventListener('pointerdown', (event) => {
      anchor = px(event);
      anchorY = event.clientY;
      this.dragging = true;
      // Ahead of the page's own Escape (which closes an open session).
      document.addEventListener('keydown', escape, true);
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
      const across = Math.abs(end - start);
      const down = Math.abs(event.clientY - anchorY);
      finish();
      // The bars drawn are the ones selected from (`buckets`), even if newer ones arrived meanwhile.
      if (across < 4 && down < 4) {
        // A click (or tap) selects the bar under the pointer.
        const i = Math.min(n - 1, Math.max(0, Math.floor(start / barWidth)));
        this.onSelect(new Date(buckets[i].start), new Date(buckets[i].start + step));
      } else if (across >= 4) {
        this.onSelect(new Date(time(Math.min(start, end))), new Date(time(Math.max(start, end))));
      }
      // Else it moved up or down only: a swipe the page did not scroll for (a mouse), not a pick.
      if (this.stale) this.draw();
    });
    // A cancelled drag, or one whose pointer capture was taken away (the window lost focus).
    const abandon = () => {
      if (anchor === null) return;
      finish();
      if (this.stale) this.draw();
    };
    chart.addEventListener('pointercancel', abandon);
    chart.addEventListener('lostpointercapture', abandon);
    this.root.append(chart);

    const legend = el('ul', { class: 'legend', 'aria-label': 'Technologies' });
    for (const key of [...technologies].filter(Boolean).sort()) {
      legend.append(el('li', {}, el('span', { class: 'swatch', 'data-colour': colourOf(key) }), key));
    }
    if (total) legend.append(el('li', { class: 'legend-note', text: FIRST_BAR_NOTE }));
    this.root.append(legend);
    // Inline style attributes are blocked by the policy; the CSSOM is not.
    for (const swatch of legend.querySelectorAll('.swatch')) swatch.style.background = swatch.dataset.colour;
  }
}
