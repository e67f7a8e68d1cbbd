/**
 * The canvas heatmap: cells drawn as one 1-pixel-per-cell image scaled up without smoothing (fast for
 * 1024 x 200 and beyond), d3 axes in SVG, column groups with gaps (each may have its own colour scale),
 * missing cells hatched, a colour legend, a hover tooltip with exact values, and PNG/CSV export.
 * Every label is set as text (d3's .text() / textContent), never parsed as HTML.
 */
import { axisBottom, axisLeft, axisTop } from 'd3-axis';
import { scaleLinear } from 'd3-scale';
import { select } from 'd3-selection';
import { downloadCanvas, downloadCsv, fileName } from './export';
import { type Grid, hasMissing } from './grid';
import { type Layout, colX, computeLayout, hitTest, labelMargin, thinTicks, truncate } from './layout';
import { type ColourScale, LUT_SIZE, MISSING_FILL, MISSING_HATCH, colourLut, textOn } from './scales';
import { type TooltipContent, hideTooltip, showTooltip } from './tooltip';
import { compact } from './format';

export interface HeatmapGroup {
  label: string;
  count: number;
  /** Colour scale of this group's columns (default: the heatmap's scale). */
  scale?: ColourScale;
  /** Text drawn inside cells of this group when they are big enough. */
  cellFormat?: (v: number) => string;
  /** Label used when `label` does not fit over the group. */
  shortLabel?: string;
  /** No per-column labels (a one-column group named by its group label). */
  hideColLabels?: boolean;
}

export interface HeatmapOptions {
  id: string;
  title: string;
  subtitle?: string;
  grid: Grid;
  scale: ColourScale;
  groups?: HeatmapGroup[];
  rowTitle: string;
  colTitle: string;
  /** Width available to the whole heatmap (labels included). */
  width: number;
  maxPlotHeight?: number;
  minCellW?: number;
  maxCellW?: number;
  minCellH?: number;
  maxCellH?: number;
  cellFormat?: (v: number) => string;
  tooltip: (row: number, col: number) => TooltipContent | null;
  onCellClick?: (row: number, col: number) => void;
  selected?: { row: number | null; col: number | null };
  headerExtras?: Node[];
  /** Parts of the export file names (run, role, view, ...). */
  fileBase: string[];
  /** Colour stripe (the run's colour) beside the title. */
  accent?: string;
  rowLabelMax?: number;
  /** Emphasised row (e.g. the selected layer) in the row labels. */
  emphasisRow?: number | null;
  /** Legend text for hatched cells (default: "missing (no record), not zero"). */
  missingLabel?: string;
}

export interface HeatmapHandle {
  root: HTMLElement;
  layout: Layout;
  renderMs: number;
  toPng(): HTMLCanvasElement;
}

const FONT = '11px Roboto, "Helvetica Neue", Arial, sans-serif';
const RENDERED_EVENT = 'mmx-heatmap-rendered';

/** A hatch pattern tile for missing cells. */
function hatchTile(): HTMLCanvasElement {
  const c = document.createElement('canvas');
  c.width = 8;
  c.height = 8;
  const x = c.getContext('2d')!;
  x.fillStyle = MISSING_FILL;
  x.fillRect(0, 0, 8, 8);
  x.strokeStyle = MISSING_HATCH;
  x.lineWidth = 1;
  x.beginPath();
  x.moveTo(0, 8);
  x.lineTo(8, 0);
  x.moveTo(-2, 2);
  x.lineTo(2, -2);
  x.moveTo(6, 10);
  x.lineTo(10, 6);
  x.stroke();
  return c;
}

/** A d3-axis compatible scale over column/row indices with arbitrary positions (handles group gaps). */
function indexScale(n: number, pos: (i: number) => number, range: [number, number]) {
  const f = ((i: number) => pos(i)) as ((i: number) => number) & {
    domain: () => number[];
    range: () => number[];
    copy: () => unknown;
  };
  f.domain = () => Array.from({ length: n }, (_, i) => i);
  f.range = () => range;
  f.copy = () => f;
  return f;
}

interface ColumnPaint {
  lo: number;
  hi: number;
  inv: number;
  lut32: Uint32Array;
}

/** Paints the cells: one pixel per cell into an offscreen image, scaled onto the plot canvas. */
export function paintCells(
  canvas: HTMLCanvasElement,
  grid: Grid,
  l: Layout,
  columnScale: (c: number) => ColourScale,
  dpr: number,
): void {
  const { rows, cols, values } = grid;
  canvas.width = Math.max(1, Math.ceil(l.plotW * dpr));
  canvas.height = Math.max(1, Math.ceil(l.plotH * dpr));
  const ctx = canvas.getContext('2d')!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  if (!rows || !cols) return;

  const luts = new Map<ColourScale, ColumnPaint>();
  const colPaint: ColumnPaint[] = new Array(cols);
  for (let c = 0; c < cols; c++) {
    const s = columnScale(c);
    let p = luts.get(s);
    if (!p) {
      const [lo, hi] = s.domain;
      const lut = colourLut(s);
      p = { lo, hi, inv: (LUT_SIZE - 1) / (hi - lo || 1), lut32: new Uint32Array(lut.buffer, lut.byteOffset, LUT_SIZE) };
      luts.set(s, p);
    }
    colPaint[c] = p;
  }

  const off = document.createElement('canvas');
  off.width = cols;
  off.height = rows;
  const octx = off.getContext('2d')!;
  const img = octx.createImageData(cols, rows);
  // One 32-bit store per cell: RGBA bytes of the LUT copied as words (same byte order in and out).
  const out = new Uint32Array(img.data.buffer, img.data.byteOffset, rows * cols);
  const max = LUT_SIZE - 1;
  if (luts.size === 1) {
    // One scale: the tight loop the 1024 x 200 target is measured on. NaN (missing) stays transparent,
    // so the hatch drawn under the image shows through.
    const { lo, hi, inv, lut32 } = colPaint[0];
    const n = rows * cols;
    for (let i = 0; i < n; i++) {
      const v = values[i];
      if (v !== v) continue;
      out[i] = lut32[v <= lo ? 0 : v >= hi ? max : ((v - lo) * inv + 0.5) | 0];
    }
  } else {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const i = r * cols + c;
        const v = values[i];
        if (v !== v) continue;
        const { lo, hi, inv, lut32 } = colPaint[c];
        out[i] = lut32[v <= lo ? 0 : v >= hi ? max : ((v - lo) * inv + 0.5) | 0];
      }
    }
  }
  octx.putImageData(img, 0, 0);

  const pattern = ctx.createPattern(hatchTile(), 'repeat');
  ctx.imageSmoothingEnabled = false;
  l.groups.forEach((n, g) => {
    const x = l.groupX[g];
    const w = n * l.cellW;
    ctx.fillStyle = pattern ?? MISSING_FILL;
    ctx.fillRect(x, 0, w, l.plotH);
    ctx.drawImage(off, l.groupStart[g], 0, n, rows, x, 0, w, l.plotH);
  });
}

/** White lines between cells, values inside cells and notes on missing rows, where they fit. */
function paintAnnotations(canvas: HTMLCanvasElement, opts: HeatmapOptions, l: Layout, columnScale: (c: number) => ColourScale, columnFormat: (c: number) => ((v: number) => string) | undefined, dpr: number): void {
  const ctx = canvas.getContext('2d')!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const g = opts.grid;
  if (l.cellW >= 10 && l.cellH >= 10) {
    ctx.strokeStyle = '#ffffff';
    ctx.lineWidth = 1;
    ctx.beginPath();
    l.groups.forEach((n, gi) => {
      const x0 = l.groupX[gi];
      for (let i = 1; i < n; i++) {
        ctx.moveTo(x0 + i * l.cellW, 0);
        ctx.lineTo(x0 + i * l.cellW, l.plotH);
      }
      for (let r = 1; r < g.rows; r++) {
        ctx.moveTo(x0, r * l.cellH);
        ctx.lineTo(x0 + n * l.cellW, r * l.cellH);
      }
    });
    ctx.stroke();
  }
  ctx.font = FONT;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'middle';
  if (l.cellW >= 30 && l.cellH >= 13) {
    for (let c = 0; c < g.cols; c++) {
      const fmt = columnFormat(c);
      if (!fmt) continue;
      const s = columnScale(c);
      const cx = colX(l, c) + l.cellW / 2;
      for (let r = 0; r < g.rows; r++) {
        const v = g.values[r * g.cols + c];
        if (Number.isNaN(v)) continue;
        ctx.fillStyle = textOn(s.colour(v));
        ctx.fillText(fmt(v), cx, (r + 0.5) * l.cellH, l.cellW - 2);
      }
    }
  }
  if (g.rowNotes && l.cellH >= 11) {
    for (let r = 0; r < g.rows; r++) {
      const note = g.rowNotes[r];
      if (!note) continue;
      const y = (r + 0.5) * l.cellH;
      const w = Math.min(l.plotW - 4, ctx.measureText(note).width + 10);
      ctx.fillStyle = 'rgba(255,255,255,0.85)';
      ctx.fillRect(l.plotW / 2 - w / 2, y - 7, w, 14);
      ctx.fillStyle = '#424242';
      ctx.fillText(note, l.plotW / 2, y, l.plotW - 6);
    }
  }
}

function legendElement(scale: ColourScale, width = 180): HTMLElement {
  const el = document.createElement('div');
  el.className = 'mmx-legend';
  const label = document.createElement('span');
  label.className = 'mmx-legend-label';
  label.textContent = scale.label;
  const bar = document.createElement('div');
  bar.className = 'mmx-legend-bar';
  const c = document.createElement('canvas');
  c.width = width;
  c.height = 10;
  c.style.width = `${width}px`;
  c.style.height = '10px';
  const ctx = c.getContext('2d');
  if (ctx) {
    // The legend uses the very LUT the cells are painted with.
    const lut = colourLut(scale);
    const img = ctx.createImageData(width, 10);
    for (let x = 0; x < width; x++) {
      const k = Math.round((x / (width - 1)) * (LUT_SIZE - 1)) * 4;
      for (let y = 0; y < 10; y++) {
        const o = (y * width + x) * 4;
        img.data[o] = lut[k];
        img.data[o + 1] = lut[k + 1];
        img.data[o + 2] = lut[k + 2];
        img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
  }
  const svg = select(bar).append('svg').attr('width', width + 24).attr('height', 20);
  const ax = scaleLinear().domain(scale.domain).range([0, width]);
  const ticks = scale.kind === 'diverging' ? [scale.domain[0], 0, scale.domain[1]] : ax.ticks(4);
  svg
    .append('g')
    .attr('transform', 'translate(12,0)')
    .call(axisBottom(ax).tickValues(ticks).tickSize(4).tickFormat((v) => (scale.tickFormat ?? compact)(+v)));
  bar.prepend(c);
  c.style.marginLeft = '12px';
  el.append(label, bar);
  return el;
}

function missingLegend(text: string): HTMLElement {
  const el = document.createElement('div');
  el.className = 'mmx-legend mmx-legend-missing';
  const c = document.createElement('canvas');
  c.width = 16;
  c.height = 10;
  const ctx = c.getContext('2d');
  if (ctx) {
    ctx.fillStyle = ctx.createPattern(hatchTile(), 'repeat') ?? MISSING_FILL;
    ctx.fillRect(0, 0, 16, 10);
  }
  const t = document.createElement('span');
  t.textContent = text;
  el.append(c, t);
  return el;
}

function button(text: string, title: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'mmx-btn mmx-btn-small';
  b.textContent = text;
  b.title = title;
  b.addEventListener('click', onClick);
  return b;
}

export function createHeatmap(opts: HeatmapOptions): HeatmapHandle {
  const t0 = performance.now();
  const grid = opts.grid;
  const groups = opts.groups && opts.groups.reduce((a, g) => a + g.count, 0) === grid.cols ? opts.groups : undefined;
  const colScale: ColourScale[] = new Array(grid.cols);
  const colFormat: (((v: number) => string) | undefined)[] = new Array(grid.cols);
  {
    let c = 0;
    for (const g of groups ?? [{ label: '', count: grid.cols }]) {
      for (let i = 0; i < g.count; i++, c++) {
        colScale[c] = g.scale ?? opts.scale;
        colFormat[c] = g.cellFormat ?? opts.cellFormat;
      }
    }
  }
  const scaleOf = (c: number) => colScale[c] ?? opts.scale;
  const formatOf = (c: number) => colFormat[c];

  const rowLabelMax = opts.rowLabelMax ?? 30;
  const mLeft = labelMargin(grid.rowLabels, rowLabelMax);
  const hiddenCol = new Array<boolean>(grid.cols).fill(false);
  if (groups) {
    let c = 0;
    for (const g of groups) for (let i = 0; i < g.count; i++, c++) hiddenCol[c] = !!g.hideColLabels;
  }
  const maxColLabel = grid.colLabels.reduce((m, s, c) => (hiddenCol[c] ? m : Math.max(m, s.length)), 1);
  const mTop = (groups && groups.length > 1 ? 20 : 0) + 24;
  const mRight = 16;
  const mBottom = 6;
  const l = computeLayout({
    rows: grid.rows,
    cols: grid.cols,
    groups: groups?.map((g) => g.count),
    gap: 12,
    maxPlotWidth: Math.max(60, opts.width - mLeft - mRight),
    maxPlotHeight: opts.maxPlotHeight ?? 420,
    minCellW: opts.minCellW ?? 2,
    maxCellW: opts.maxCellW ?? 44,
    minCellH: opts.minCellH ?? 0.25,
    maxCellH: opts.maxCellH ?? 22,
  });
  const dpr = Math.min(2, window.devicePixelRatio || 1);

  // --- DOM
  const root = document.createElement('section');
  root.className = 'mmx-card mmx-heatmap';
  root.dataset.heatmap = opts.id;
  const head = document.createElement('div');
  head.className = 'mmx-card-head';
  if (opts.accent) {
    const sw = document.createElement('span');
    sw.className = 'mmx-swatch';
    sw.style.background = opts.accent;
    head.appendChild(sw);
  }
  const h = document.createElement('h3');
  h.textContent = opts.title;
  head.appendChild(h);
  if (opts.subtitle) {
    const s = document.createElement('span');
    s.className = 'mmx-sub';
    s.textContent = opts.subtitle;
    head.appendChild(s);
  }
  const actions = document.createElement('div');
  actions.className = 'mmx-actions';
  for (const n of opts.headerExtras ?? []) actions.appendChild(n);
  head.appendChild(actions);
  root.appendChild(head);

  const body = document.createElement('div');
  body.className = 'mmx-hm-body';
  const totalW = mLeft + l.plotW + mRight;
  const totalH = mTop + l.plotH + mBottom;
  body.style.width = `${totalW}px`;
  body.style.height = `${totalH}px`;
  // The card is as wide as its heatmap (legends and header wrap), so small multiples sit side by side.
  root.style.width = `${Math.max(totalW, 340) + 22}px`;
  root.appendChild(body);

  const base = document.createElement('canvas');
  base.className = 'mmx-hm-cells';
  const overlay = document.createElement('canvas');
  overlay.className = 'mmx-hm-overlay';
  for (const c of [base, overlay]) {
    c.style.left = `${mLeft}px`;
    c.style.top = `${mTop}px`;
    c.style.width = `${l.plotW}px`;
    c.style.height = `${l.plotH}px`;
  }
  overlay.width = Math.max(1, Math.ceil(l.plotW * dpr));
  overlay.height = Math.max(1, Math.ceil(l.plotH * dpr));
  overlay.tabIndex = 0;
  overlay.setAttribute('role', 'img');
  overlay.setAttribute('aria-label', `${opts.title}: ${grid.rows} ${opts.rowTitle} x ${grid.cols} ${opts.colTitle}`);
  if (opts.onCellClick) overlay.style.cursor = 'pointer';

  paintCells(base, grid, l, scaleOf, dpr);
  paintAnnotations(base, opts, l, scaleOf, formatOf, dpr);

  // Axes (SVG, d3-axis; labels are text nodes).
  const svg = select(body).append('svg').attr('class', 'mmx-hm-axes').attr('width', totalW).attr('height', totalH);
  const rowTicks = thinTicks(grid.rows, l.cellH, 13);
  const rowAxis = axisLeft(indexScale(grid.rows, (i) => (i + 0.5) * l.cellH, [0, l.plotH]) as never)
    .tickValues(rowTicks as never)
    .tickSizeOuter(0)
    .tickSize(3)
    .tickFormat(((i: number) => truncate(grid.rowLabels[i] ?? '', rowLabelMax)) as never);
  const gRows = svg.append('g').attr('class', 'mmx-axis mmx-axis-rows').attr('transform', `translate(${mLeft - 1},${mTop})`).call(rowAxis);
  gRows
    .selectAll<SVGGElement, number>('.tick')
    .classed('mmx-emph', (i) => i === opts.emphasisRow)
    .append('title')
    .text((i) => grid.rowLabels[i] ?? '');
  const colTicks = thinTicks(grid.cols, l.cellW, Math.min(80, maxColLabel * 6.6 + 8)).filter((c) => !hiddenCol[c]);
  const colAxis = axisTop(indexScale(grid.cols, (c) => colX(l, c) + l.cellW / 2, [0, l.plotW]) as never)
    .tickValues(colTicks as never)
    .tickSizeOuter(0)
    .tickSize(3)
    .tickFormat(((c: number) => grid.colLabels[c] ?? '') as never);
  svg.append('g').attr('class', 'mmx-axis mmx-axis-cols').attr('transform', `translate(${mLeft},${mTop - 1})`).call(colAxis);
  if (groups && groups.length > 1) {
    const gg = svg.append('g').attr('class', 'mmx-groups').attr('transform', `translate(${mLeft},0)`);
    groups.forEach((g, i) => {
      const x = l.groupX[i];
      const w = g.count * l.cellW;
      gg.append('path').attr('d', `M${x + 1},14V10H${x + w - 1}V14`).attr('class', 'mmx-group-bracket');
      gg.append('text').attr('x', x + w / 2).attr('y', 8).attr('text-anchor', 'middle').text(groupLabel(g, w + l.gap));
    });
  }
  svg
    .append('text')
    .attr('class', 'mmx-corner')
    .attr('x', mLeft - 6)
    .attr('y', mTop - 8)
    .attr('text-anchor', 'end')
    .text(mLeft >= 90 ? `${opts.rowTitle} ↓ ${opts.colTitle} →` : `${opts.colTitle} →`);

  body.append(base, overlay);

  // Legend(s).
  const legends = document.createElement('div');
  legends.className = 'mmx-legends';
  const seen = new Set<ColourScale>();
  for (let c = 0; c < grid.cols; c++) {
    const s = scaleOf(c);
    if (seen.has(s)) continue;
    seen.add(s);
    legends.appendChild(legendElement(s));
  }
  if (hasMissing(grid)) legends.appendChild(missingLegend(opts.missingLabel ?? 'missing (no record), not zero'));
  root.appendChild(legends);

  // Interaction: hover outline + tooltip, click.
  const octx = overlay.getContext('2d')!;
  let hover: { row: number; col: number } | null = null;
  const drawOverlay = () => {
    octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    octx.clearRect(0, 0, l.plotW, l.plotH);
    const outline = (cell: { row: number; col: number }, colour: string, w: number) => {
      const x = colX(l, cell.col);
      const y = cell.row * l.cellH;
      const ch = Math.max(l.cellH, 2);
      const cw = Math.max(l.cellW, 2);
      octx.lineWidth = w;
      octx.strokeStyle = '#ffffff';
      octx.strokeRect(x - 1, y - 1, cw + 2, ch + 2);
      octx.strokeStyle = colour;
      octx.strokeRect(x - 2, y - 2, cw + 4, ch + 4);
    };
    const sel = opts.selected;
    if (sel && sel.row !== null && sel.col !== null && sel.row < grid.rows && sel.col < grid.cols) {
      outline({ row: sel.row, col: sel.col }, '#d50000', 2);
    } else if (sel && sel.row !== null && sel.row < grid.rows) {
      octx.strokeStyle = '#d50000';
      octx.lineWidth = 2;
      octx.strokeRect(1, sel.row * l.cellH - 1, l.plotW - 2, Math.max(l.cellH, 2) + 2);
    } else if (sel && sel.col !== null && sel.col < grid.cols) {
      octx.strokeStyle = '#d50000';
      octx.lineWidth = 2;
      octx.strokeRect(colX(l, sel.col) - 1, 1, Math.max(l.cellW, 2) + 2, l.plotH - 2);
    }
    if (hover) outline(hover, '#212121', 1);
  };
  drawOverlay();
  const cellAt = (e: MouseEvent) => {
    const rect = overlay.getBoundingClientRect();
    return hitTest(l, e.clientX - rect.left, e.clientY - rect.top);
  };
  overlay.addEventListener('mousemove', (e) => {
    const cell = cellAt(e);
    if (!cell) {
      hover = null;
      drawOverlay();
      hideTooltip();
      return;
    }
    if (!hover || hover.row !== cell.row || hover.col !== cell.col) {
      hover = cell;
      drawOverlay();
    }
    const content = opts.tooltip(cell.row, cell.col);
    if (content) showTooltip(content, e.clientX, e.clientY);
    else hideTooltip();
  });
  overlay.addEventListener('mouseleave', () => {
    hover = null;
    drawOverlay();
    hideTooltip();
  });
  if (opts.onCellClick) {
    overlay.addEventListener('click', (e) => {
      const cell = cellAt(e);
      if (cell) opts.onCellClick!(cell.row, cell.col);
    });
  }

  const toPng = (): HTMLCanvasElement => exportCanvas(opts, l, base, mLeft, mTop, [...seen], rowTicks, colTicks, groups);
  actions.append(
    button('PNG', 'Download this heatmap as a PNG image', () => downloadCanvas(toPng(), fileName([...opts.fileBase, opts.id], 'png'))),
    button('CSV', 'Download the data of this heatmap as CSV', () =>
      downloadCsv(grid, opts.rowTitle, fileName([...opts.fileBase, opts.id], 'csv')),
    ),
  );

  const t1 = performance.now();
  const renderMs = t1 - t0;
  root.dataset.renderMs = renderMs.toFixed(2);
  root.dataset.rows = String(grid.rows);
  root.dataset.cols = String(grid.cols);
  root.dataset.layout = JSON.stringify({
    left: mLeft,
    top: mTop,
    cellW: l.cellW,
    cellH: l.cellH,
    groupX: l.groupX,
    groupStart: l.groupStart,
    groups: l.groups,
  });
  try {
    performance.measure(`mmx:heatmap:${opts.id}`, { start: t0, end: t1 });
  } catch {
    /* older browsers: no measure options */
  }
  requestAnimationFrame(() => {
    root.dataset.frameMs = (performance.now() - t0).toFixed(2);
  });
  document.dispatchEvent(new CustomEvent(RENDERED_EVENT, { detail: { id: opts.id, ms: renderMs } }));
  return { root, layout: l, renderMs, toPng };
}

/** The group's label, or its short label when the full one (about 6 px a character) is wider than `width`. */
export function groupLabel(g: HeatmapGroup, width: number): string {
  return g.shortLabel && g.label.length * 6 > width ? g.shortLabel : g.label;
}

export function onHeatmapRendered(fn: (id: string, ms: number) => void): () => void {
  const h = (e: Event) => {
    const d = (e as CustomEvent<{ id: string; ms: number }>).detail;
    fn(d.id, d.ms);
  };
  document.addEventListener(RENDERED_EVENT, h);
  return () => document.removeEventListener(RENDERED_EVENT, h);
}

/** A standalone picture of the heatmap: title, labels, cells and legend, for the PNG export. */
function exportCanvas(
  opts: HeatmapOptions,
  l: Layout,
  base: HTMLCanvasElement,
  mLeft: number,
  mTop: number,
  scales: ColourScale[],
  rowTicks: number[],
  colTicks: number[],
  groups: HeatmapGroup[] | undefined,
): HTMLCanvasElement {
  const scale = 2;
  const titleH = 40;
  const legendH = 40 * scales.length + 10;
  const W = Math.max(mLeft + l.plotW + 20, 360);
  const H = titleH + mTop + l.plotH + legendH;
  const c = document.createElement('canvas');
  c.width = Math.ceil(W * scale);
  c.height = Math.ceil(H * scale);
  const ctx = c.getContext('2d')!;
  ctx.scale(scale, scale);
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, W, H);
  ctx.fillStyle = '#212121';
  ctx.font = 'bold 14px Roboto, Arial, sans-serif';
  ctx.textBaseline = 'top';
  ctx.fillText(opts.title, 8, 6, W - 16);
  ctx.font = FONT;
  ctx.fillStyle = '#616161';
  if (opts.subtitle) ctx.fillText(opts.subtitle, 8, 24, W - 16);
  const top = titleH + mTop;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(base, mLeft, top, l.plotW, l.plotH);
  ctx.fillStyle = '#212121';
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'right';
  for (const r of rowTicks) ctx.fillText(truncate(opts.grid.rowLabels[r] ?? '', opts.rowLabelMax ?? 30), mLeft - 5, top + (r + 0.5) * l.cellH);
  ctx.textAlign = 'center';
  ctx.textBaseline = 'bottom';
  for (const col of colTicks) ctx.fillText(opts.grid.colLabels[col] ?? '', mLeft + colX(l, col) + l.cellW / 2, top - 4);
  if (groups && groups.length > 1) {
    groups.forEach((g, i) => ctx.fillText(groupLabel(g, g.count * l.cellW + l.gap), mLeft + l.groupX[i] + (g.count * l.cellW) / 2, top - 20));
  }
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  let y = top + l.plotH + 14;
  for (const s of scales) {
    for (let x = 0; x < 180; x++) {
      ctx.fillStyle = s.interpolate(x / 179);
      ctx.fillRect(mLeft + x, y, 1, 10);
    }
    ctx.fillStyle = '#212121';
    const fmt = s.tickFormat ?? compact;
    ctx.textAlign = 'center';
    ctx.fillText(fmt(s.domain[0]), mLeft, y + 20);
    ctx.fillText(fmt(s.domain[1]), mLeft + 180, y + 20);
    if (s.kind === 'diverging') ctx.fillText('0', mLeft + 90, y + 20);
    ctx.textAlign = 'left';
    ctx.fillText(s.label, mLeft + 190, y + 5);
    y += 40;
  }
  return c;
}
