/**
 * Data transforms: API responses -> grids for the views. Pure functions, unit-tested in test/transforms.test.ts.
 */
import { type Grid, makeGrid, set, get } from './grid';
import { DISPLAY_ORDER, type Measure, type Scope, measureValues, scoped } from './pairs';
import {
  TERMS,
  type CompareHeatmapResponse,
  type CompareHeatmapResult,
  type CompareOverviewResponse,
  type CompareOverviewResult,
  type Num,
  type HeatmapResponse,
  type LayerTotals,
  type OverviewResponse,
  type TimelineResponse,
  type UnitHeatmap,
  type UnitsResponse,
} from './types';

/** Column labels of a pair grid (display order) followed by the near-zero result fraction column. */
export const NZ_COLUMN = 'near-zero results';
export const PAIR_COLUMNS: string[] = [...DISPLAY_ORDER.map((i) => TERMS[i]), NZ_COLUMN];

/** Maps a pair-grid column to the index of its pair in TERMS order (-1 for the near-zero fraction column). */
export function termOfColumn(col: number): number {
  return col < DISPLAY_ORDER.length ? DISPLAY_ORDER[col] : -1;
}

/** Fills one row of a pair grid from a record with nine-arrays. */
function fillPairRow(
  g: Grid,
  r: number,
  rec: { counts: number[]; sums: Num[]; near_zero_counts: number[]; near_zero_sums: Num[] },
  nearZeroFraction: Num,
  measure: Measure,
  scope: Scope,
): void {
  const { counts, sums } = scoped(rec, scope);
  const vals = measureValues(counts, sums, measure);
  DISPLAY_ORDER.forEach((term, c) => set(g, r, c, vals[term]));
  set(g, r, DISPLAY_ORDER.length, nearZeroFraction);
}

/**
 * Layers (model order) x [nine pairs in display order, near-zero result fraction].
 * A null layer (missing in a compared run) leaves its row NaN: drawn as missing, never as zero.
 */
export function overviewGrid(layers: (LayerTotals | null)[], names: string[], measure: Measure, scope: Scope): Grid {
  const g = makeGrid(names.length, PAIR_COLUMNS.length, names.slice(), PAIR_COLUMNS.slice());
  g.rowNotes = names.map(() => null);
  layers.forEach((layer, r) => {
    if (!layer) {
      g.rowNotes![r] = 'missing';
      return;
    }
    fillPairRow(g, r, layer, layer.near_zero_fraction, measure, scope);
  });
  return g;
}

export function overviewGridOf(ov: OverviewResponse, measure: Measure, scope: Scope): Grid {
  return overviewGrid(ov.layers, ov.layers.map((l) => l.name), measure, scope);
}

/** Layers x steps of the near-zero result fraction; null -> NaN (no record at that step). */
export function heatmapGrid(h: { layers: string[]; steps: number[]; values: ((number | null)[] | null)[] }): Grid {
  const g = makeGrid(h.layers.length, h.steps.length, h.layers.slice(), h.steps.map(String));
  g.rowNotes = h.layers.map(() => null);
  h.values.forEach((row, r) => {
    if (!row) {
      g.rowNotes![r] = 'missing';
      return;
    }
    row.forEach((v, c) => set(g, r, c, v));
  });
  return g;
}

/** Row labels of stored unit rows: "12" for single units, "12–15" for groups. */
export function unitRowLabels(rows: number, groupSize: number, units: number): string[] {
  const labels = new Array<string>(rows);
  for (let r = 0; r < rows; r++) {
    if (groupSize <= 1) labels[r] = String(r);
    else {
      const lo = r * groupSize;
      const hi = Math.min(units, lo + groupSize) - 1;
      labels[r] = lo === hi ? String(lo) : `${lo}–${hi}`;
    }
  }
  return labels;
}

export type UnitSort = 'unit' | 'near_zero' | `pair:${number}`;

/**
 * Row permutation for the units views. 'near_zero': units whose results are near zero most often first
 * (ties keep unit order); 'pair:c': by the value in pair-grid column c, largest first; missing values last.
 */
export function sortOrder(g: Grid, sort: UnitSort): number[] {
  const order = Array.from({ length: g.rows }, (_, i) => i);
  let col: number;
  if (sort === 'unit') return order;
  if (sort === 'near_zero') col = g.cols - 1;
  else col = Number(sort.slice(5));
  if (!(col >= 0 && col < g.cols)) return order;
  const key = (r: number) => {
    const v = get(g, r, col);
    return Number.isNaN(v) ? -Infinity : v;
  };
  return order.sort((a, b) => key(b) - key(a) || a - b);
}

/** Reorders a grid's rows (labels and notes follow). */
export function permuteRows(g: Grid, order: number[]): Grid {
  const values = new (g.values.constructor as Float64ArrayConstructor)(order.length * g.cols);
  order.forEach((src, dst) => values.set(g.values.subarray(src * g.cols, (src + 1) * g.cols), dst * g.cols));
  return {
    rows: order.length,
    cols: g.cols,
    values,
    rowLabels: order.map((i) => g.rowLabels[i]),
    colLabels: g.colLabels,
    rowNotes: g.rowNotes ? order.map((i) => g.rowNotes![i]) : undefined,
  };
}

/** Units (stored rows) x [nine pairs in display order, near-zero result fraction] at one step. */
export function unitsGrid(u: UnitsResponse, measure: Measure, scope: Scope): Grid {
  const rows = u.counts.length;
  const g = makeGrid(rows, PAIR_COLUMNS.length, unitRowLabels(rows, u.group_size, u.units), PAIR_COLUMNS.slice());
  for (let r = 0; r < rows; r++) {
    fillPairRow(
      g,
      r,
      { counts: u.counts[r], sums: u.sums[r], near_zero_counts: u.near_zero_counts[r], near_zero_sums: u.near_zero_sums[r] },
      u.near_zero_fraction[r],
      measure,
      scope,
    );
  }
  return g;
}

/** Unit rows x steps of the near-zero fraction, straight from the f32 body (no copy). */
export function unitHeatmapGrid(h: UnitHeatmap, units: number): Grid {
  return {
    rows: h.rows,
    cols: h.steps.length,
    values: h.values,
    rowLabels: unitRowLabels(h.rows, h.groupSize, units),
    colLabels: h.steps.map(String),
  };
}

/** The nine pairs (display order) x steps of one layer's measure, from /timeline. */
export function timelineGrid(t: TimelineResponse, measure: Measure, scope: Scope): Grid {
  const labels = DISPLAY_ORDER.map((i) => TERMS[i]);
  const g = makeGrid(labels.length, t.steps.length, labels, t.steps.map(String));
  t.steps.forEach((_, c) => {
    const { counts, sums } = scoped(
      { counts: t.counts[c], sums: t.sums[c], near_zero_counts: t.near_zero_counts[c], near_zero_sums: t.near_zero_sums[c] },
      scope,
    );
    const vals = measureValues(counts, sums, measure);
    DISPLAY_ORDER.forEach((term, r) => set(g, r, c, vals[term]));
  });
  return g;
}

/**
 * The steps of a layer's timeline at which a pair sum is not finite (the backend sends null for NaN and inf): NaN
 * or inf reached the layer's products at those steps. (A null near-zero fraction only means no cells: not counted.)
 */
export function nonFiniteSteps(t: TimelineResponse): number[] {
  const bad = (row: (number | null)[] | undefined) => !!row && row.some((v) => v === null || !Number.isFinite(v));
  return t.steps.filter((_, c) => bad(t.sums[c]) || bad(t.near_zero_sums[c]));
}

/**
 * Union of several runs' layer names, keeping model order: each run's order is respected, and a layer
 * only one run has is placed after the layers that precede it in that run.
 */
export function alignNames(lists: string[][]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const list of lists) {
    let prev = -1; // position in `out` of the last name of this list placed so far
    list.forEach((name, i) => {
      if (seen.has(name)) {
        prev = out.indexOf(name);
        return;
      }
      let at: number;
      if (prev >= 0) at = prev + 1;
      else {
        // Before everything this list shares with the union: just before the next shared name.
        const next = list.slice(i + 1).find((n) => seen.has(n));
        at = next === undefined ? out.length : out.indexOf(next);
      }
      out.splice(at, 0, name);
      seen.add(name);
      prev = at;
    });
  }
  return out;
}

/** Re-indexes a grid onto the given row and column labels; labels it lacks become NaN rows/columns. */
export function reindex(g: Grid, rowLabels: string[], colLabels: string[]): Grid {
  const rIdx = new Map(g.rowLabels.map((l, i) => [l, i]));
  const cIdx = new Map(g.colLabels.map((l, i) => [l, i]));
  const out = makeGrid(rowLabels.length, colLabels.length, rowLabels.slice(), colLabels.slice());
  out.rowNotes = rowLabels.map((l) => {
    const r = rIdx.get(l);
    return r === undefined ? 'missing' : (g.rowNotes?.[r] ?? null);
  });
  rowLabels.forEach((rl, r) => {
    const src = rIdx.get(rl);
    if (src === undefined) return;
    colLabels.forEach((cl, c) => {
      const sc = cIdx.get(cl);
      if (sc !== undefined) set(out, r, c, get(g, src, sc));
    });
  });
  return out;
}

/**
 * The difference view A - B, aligned by row label (layer name) and column label (pair or step).
 * A cell missing in either run is missing in the difference (NaN), never a difference against zero.
 */
export function differenceGrid(a: Grid, b: Grid, nameA = 'A', nameB = 'B'): Grid {
  const rows = alignNames([a.rowLabels, b.rowLabels]);
  const cols = alignNames([a.colLabels, b.colLabels]);
  if (cols.every((c) => /^-?\d+$/.test(c))) cols.sort((x, y) => Number(x) - Number(y));
  const ra = reindex(a, rows, cols);
  const rb = reindex(b, rows, cols);
  const out = makeGrid(rows.length, cols.length, rows, cols);
  for (let i = 0; i < out.values.length; i++) out.values[i] = ra.values[i] - rb.values[i];
  out.rowNotes = rows.map((_, r) => {
    const ma = ra.rowNotes![r] === 'missing';
    const mb = rb.rowNotes![r] === 'missing';
    if (ma && mb) return 'missing in both';
    if (ma) return `missing in ${nameA}`;
    if (mb) return `missing in ${nameB}`;
    return null;
  });
  return out;
}

/** Each run's result, with a null result (no records for the role or step) as all layers missing. */
export function compareOverviewResults(c: CompareOverviewResponse): CompareOverviewResult[] {
  return c.results.map(
    (res, k) => res ?? { run: c.runs[k], role: c.role, step: NaN, layers: c.layers.map(() => null) },
  );
}

export function compareHeatmapResults(c: CompareHeatmapResponse): CompareHeatmapResult[] {
  return c.results.map((res, k) => res ?? { run: c.runs[k], role: c.role, layers: [], steps: [], values: c.layers.map(() => null) });
}

/** One overview grid per compared run, all on the union of layer names. */
export function compareOverviewGrids(c: CompareOverviewResponse, measure: Measure, scope: Scope): Grid[] {
  return compareOverviewResults(c).map((res) => overviewGrid(res.layers, c.layers, measure, scope));
}

/** One layers x steps grid per compared run, on the union of layers and each run's own steps. */
export function compareHeatmapGrids(c: CompareHeatmapResponse): Grid[] {
  return compareHeatmapResults(c).map((res) => heatmapGrid({ layers: c.layers, steps: res.steps, values: res.values }));
}

/** Steps of a run's role, the union over layers, from a /heatmap answer. */
export function stepsOf(h: HeatmapResponse | null): number[] {
  return h ? h.steps.slice() : [];
}

/** Index of the step to show: the requested one, or the last one at or before it; latest when null. */
export function stepIndex(steps: number[], step: number | null): number {
  if (!steps.length) return -1;
  if (step === null) return steps.length - 1;
  let best = 0;
  for (let i = 0; i < steps.length; i++) if (steps[i] <= step) best = i;
  return best;
}

/** Label of the overview's inactive-share column. */
export const INACTIVE_COLUMN = 'inactive';

/**
 * The overview grid with a last column of each layer's inactive share (`inactive_fraction`: NaN where the layer has
 * no activation of its own), or the grid as it is when no layer has one (a run without activation records).
 */
export function withInactiveColumn(g: Grid, layers: readonly (LayerTotals | null)[]): Grid {
  if (!layers.some((l) => l?.inactive_fraction !== undefined && l?.inactive_fraction !== null)) return g;
  const out = makeGrid(g.rows, g.cols + 1, g.rowLabels.slice(), [...g.colLabels, INACTIVE_COLUMN]);
  out.rowNotes = g.rowNotes?.slice();
  for (let r = 0; r < g.rows; r++) {
    for (let c = 0; c < g.cols; c++) set(out, r, c, get(g, r, c));
    set(out, r, g.cols, layers[r]?.inactive_fraction);
  }
  return out;
}
