/** The one data shape every heatmap draws: rows x cols of numbers, NaN where a value is missing. */

export interface Grid {
  rows: number;
  cols: number;
  /** Row-major, length rows * cols; NaN = missing (drawn hatched, never as zero). */
  values: Float64Array | Float32Array;
  rowLabels: string[];
  colLabels: string[];
  /** Optional per-row note shown on missing rows, e.g. "missing in run b". */
  rowNotes?: (string | null)[];
}

export function makeGrid(rows: number, cols: number, rowLabels: string[], colLabels: string[]): Grid {
  const values = new Float64Array(rows * cols);
  values.fill(NaN);
  return { rows, cols, values, rowLabels, colLabels };
}

export function get(g: Grid, r: number, c: number): number {
  return g.values[r * g.cols + c];
}

export function set(g: Grid, r: number, c: number, v: number | null | undefined): void {
  g.values[r * g.cols + c] = v === null || v === undefined ? NaN : v;
}

/** [min, max] of the finite values, or null when there are none. */
export function finiteExtent(values: ArrayLike<number>): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  // NaN never compares, so lo/hi only ever see finite-or-infinite numbers; drop infinities.
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
    lo = Infinity;
    hi = -Infinity;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (Number.isFinite(v)) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    if (lo === Infinity) return null;
  }
  return [lo, hi];
}

/** Largest finite |v|, for symmetric diverging domains. */
export function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) {
    const v = Math.abs(values[i]);
    if (Number.isFinite(v) && v > m) m = v;
  }
  return m;
}

export function hasMissing(g: Grid): boolean {
  for (let i = 0; i < g.values.length; i++) if (Number.isNaN(g.values[i])) return true;
  return false;
}
