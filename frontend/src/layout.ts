/**
 * Heatmap geometry: cell sizes, column groups with gaps, hit-testing and tick thinning. Pure functions.
 */

export interface LayoutInput {
  rows: number;
  cols: number;
  /** Column counts of consecutive groups (drawn with a gap between); default one group of all columns. */
  groups?: number[];
  gap?: number;
  maxPlotWidth: number;
  maxPlotHeight: number;
  minCellW?: number;
  maxCellW?: number;
  minCellH?: number;
  maxCellH?: number;
}

export interface Layout {
  rows: number;
  cols: number;
  cellW: number;
  cellH: number;
  plotW: number;
  plotH: number;
  gap: number;
  /** Column counts per group. */
  groups: number[];
  /** First column of each group. */
  groupStart: number[];
  /** Left x of each group. */
  groupX: number[];
}

export function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

export function computeLayout(inp: LayoutInput): Layout {
  const groups = inp.groups && inp.groups.reduce((a, b) => a + b, 0) === inp.cols ? inp.groups.slice() : [inp.cols];
  const gap = groups.length > 1 ? (inp.gap ?? 10) : 0;
  const gaps = gap * (groups.length - 1);
  const cols = Math.max(1, inp.cols);
  const rows = Math.max(1, inp.rows);
  const cellW = clamp((inp.maxPlotWidth - gaps) / cols, inp.minCellW ?? 1, inp.maxCellW ?? 48);
  const cellH = clamp(inp.maxPlotHeight / rows, inp.minCellH ?? 0.25, inp.maxCellH ?? 24);
  const groupStart: number[] = [];
  const groupX: number[] = [];
  let c = 0;
  let x = 0;
  for (const n of groups) {
    groupStart.push(c);
    groupX.push(x);
    c += n;
    x += n * cellW + gap;
  }
  return {
    rows: inp.rows,
    cols: inp.cols,
    cellW,
    cellH,
    plotW: inp.cols * cellW + gaps,
    plotH: inp.rows * cellH,
    gap,
    groups,
    groupStart,
    groupX,
  };
}

/** Group index of a column. */
export function groupOf(l: Layout, col: number): number {
  let g = 0;
  for (let i = 0; i < l.groups.length; i++) if (col >= l.groupStart[i]) g = i;
  return g;
}

/** Left x of a column. */
export function colX(l: Layout, col: number): number {
  const g = groupOf(l, col);
  return l.groupX[g] + (col - l.groupStart[g]) * l.cellW;
}

/** The cell under plot coordinates (x, y), or null in a gap or outside. */
export function hitTest(l: Layout, x: number, y: number): { row: number; col: number } | null {
  if (x < 0 || y < 0 || x >= l.plotW || y >= l.plotH) return null;
  const row = Math.min(l.rows - 1, Math.floor(y / l.cellH));
  for (let g = 0; g < l.groups.length; g++) {
    const gx = x - l.groupX[g];
    const w = l.groups[g] * l.cellW;
    if (gx >= 0 && gx < w) {
      const col = l.groupStart[g] + Math.min(l.groups[g] - 1, Math.floor(gx / l.cellW));
      return { row, col };
    }
  }
  return null;
}

/** Indices 0..n-1 thinned so that labels `cellSize` apart are at least `minSpacing` apart; keeps the last. */
export function thinTicks(n: number, cellSize: number, minSpacing: number): number[] {
  if (n <= 0) return [];
  const every = Math.max(1, Math.ceil(minSpacing / Math.max(cellSize, 1e-9)));
  const out: number[] = [];
  for (let i = 0; i < n; i += every) out.push(i);
  const last = n - 1;
  if (out[out.length - 1] !== last) {
    if (out.length > 1 && (last - out[out.length - 1]) * cellSize < minSpacing) out[out.length - 1] = last;
    else out.push(last);
  }
  return out;
}

/** Shortens a label to `max` characters with an ellipsis. */
export function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, Math.max(1, max - 1))}…`;
}

/** Left margin that fits the row labels (approximate width of 11px text). */
export function labelMargin(labels: string[], max = 30): number {
  let n = 0;
  for (const l of labels) n = Math.max(n, Math.min(max, l.length));
  return clamp(Math.ceil(n * 6.6) + 14, 36, Math.max(220, Math.ceil(max * 6.6) + 14));
}
