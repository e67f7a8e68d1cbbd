/**
 * How the views colour pair grids: the colour scale of the chosen measure, the near-zero fraction's scale, the
 * column groups of a pair grid (four non-Z pairs, five Z pairs, near-zero fraction) and their cell text.
 */
import { compact, pct } from '../format';
import { type Grid, maxAbs } from '../grid';
import type { HeatmapGroup } from '../heatmap';
import { DISPLAY_GROUPS, type Measure, measureLabel } from '../pairs';
import { type ColourScale, divergingScale, sequentialScale } from '../scales';
import type { State } from '../state';

export const pctTick = (v: number) => `${Math.round(v * 100)}%`;

/** Colour scale of the chosen measure over the given values (signed sums: symmetric diverging). */
export function measureScale(s: State, values: ArrayLike<number>[], label?: string): ColourScale {
  const name = label ?? `${measureLabel(s.measure)} (${s.scope === 'near_zero' ? 'near-zero results' : 'all results'})`;
  if (s.measure === 'signed_sum') {
    let m = 0;
    for (const v of values) m = Math.max(m, maxAbs(v));
    const sc = divergingScale(m, s.diverging, name);
    sc.tickFormat = compact;
    return sc;
  }
  const sc = sequentialScale([0, 1], s.sequential, name);
  sc.tickFormat = pctTick;
  return sc;
}

export function fractionScale(s: State, label = 'near-zero result fraction'): ColourScale {
  const sc = sequentialScale([0, 1], s.sequential, label);
  sc.tickFormat = pctTick;
  return sc;
}

/** Values of the nine pair columns of a pair grid (excluding the trailing near-zero fraction column). */
export function pairValues(g: Grid): Float64Array {
  const out = new Float64Array(g.rows * (g.cols - 1));
  for (let r = 0; r < g.rows; r++) for (let c = 0; c < g.cols - 1; c++) out[r * (g.cols - 1) + c] = g.values[r * g.cols + c];
  return out;
}

export function cellFormat(m: Measure): (v: number) => string {
  return m === 'signed_sum' ? compact : (v) => pct(v, 0);
}

/** Column groups of a pair grid: the four non-Z pairs, the five Z pairs, the near-zero fraction. */
export function pairGroups(measure: ColourScale, fraction: ColourScale, m: Measure): HeatmapGroup[] {
  return [
    ...DISPLAY_GROUPS.map((g) => ({ label: g.label, shortLabel: g.short, count: g.terms.length, scale: measure, cellFormat: cellFormat(m) })),
    { label: 'near-zero results', shortLabel: 'result', count: 1, scale: fraction, cellFormat: (v: number) => pct(v, 0), hideColLabels: true },
  ];
}

/** Legend text for hatched cells of pair grids: with the near-zero scope a unit without near-zero results has no split. */
export function pairMissingLabel(s: State): string {
  return s.scope === 'near_zero' ? 'no value: no record, or no near-zero results' : 'missing (no record), not zero';
}
