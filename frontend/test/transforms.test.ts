import { describe, expect, it } from 'vitest';
import { get } from '../src/grid';
import { DISPLAY_ORDER } from '../src/pairs';
import {
  PAIR_COLUMNS,
  alignNames,
  compareHeatmapGrids,
  compareOverviewGrids,
  differenceGrid,
  heatmapGrid,
  overviewGridOf,
  permuteRows,
  reindex,
  sortOrder,
  stepIndex,
  termOfColumn,
  timelineGrid,
  unitHeatmapGrid,
  unitRowLabels,
  unitsGrid,
} from '../src/transforms';
import { compareHeatmap, compareOverview, heatmap, overview, units } from './fixtures';

describe('overview grid', () => {
  it('is layers x (nine pairs in display order + near-zero fraction)', () => {
    const ov = overview();
    const g = overviewGridOf(ov, 'count_share', 'all');
    expect(g.rows).toBe(2);
    expect(g.cols).toBe(10);
    expect(g.rowLabels).toEqual(['dense', 'dense_1']);
    expect(g.colLabels).toEqual(['PP', 'PN', 'NP', 'NN', 'ZP', 'ZN', 'ZZ', 'PZ', 'NZ', 'near-zero results']);
    expect(PAIR_COLUMNS[9]).toBe('near-zero results');
    // PP share of all counts = 40 / 160; last column the near-zero fraction.
    expect(get(g, 0, 0)).toBe(40 / 160);
    expect(get(g, 0, 9)).toBe(0.125);
    expect(get(g, 1, 9)).toBe(0.5);
    // Every row's nine shares add up to 1.
    let sum = 0;
    for (let c = 0; c < 9; c++) sum += get(g, 0, c);
    expect(sum).toBeCloseTo(1, 12);
  });

  it('near-zero scope uses the near-zero-result arrays', () => {
    const g = overviewGridOf(overview(), 'count_share', 'near_zero');
    const zpCol = DISPLAY_ORDER.indexOf(3);
    expect(get(g, 0, zpCol)).toBe(6 / 28);
  });

  it('termOfColumn maps columns back to TERMS indices', () => {
    expect(DISPLAY_ORDER.map((_, c) => termOfColumn(c))).toEqual(DISPLAY_ORDER);
    expect(termOfColumn(9)).toBe(-1);
  });
});

describe('heatmap grid', () => {
  it('keeps nulls as missing (NaN), never zero', () => {
    const g = heatmapGrid(heatmap());
    expect(g.colLabels).toEqual(['0', '100', '900']);
    expect(Number.isNaN(get(g, 1, 0))).toBe(true);
    expect(get(g, 1, 1)).toBe(0.4);
  });

  it('stepIndex picks the latest step at or before the request', () => {
    const steps = [0, 100, 900];
    expect(stepIndex(steps, null)).toBe(2);
    expect(stepIndex(steps, 100)).toBe(1);
    expect(stepIndex(steps, 500)).toBe(1);
    expect(stepIndex([], null)).toBe(-1);
  });
});

describe('units', () => {
  it('labels single units and groups', () => {
    expect(unitRowLabels(3, 1, 3)).toEqual(['0', '1', '2']);
    expect(unitRowLabels(3, 4, 10)).toEqual(['0–3', '4–7', '8–9']);
    expect(unitRowLabels(2, 2, 3)).toEqual(['0–1', '2']);
  });

  it('sorts units near zero most often first, ties in unit order, missing last', () => {
    const g = unitsGrid(units(), 'count_share', 'all');
    expect(sortOrder(g, 'near_zero')).toEqual([1, 3, 2, 0]);
    expect(sortOrder(g, 'unit')).toEqual([0, 1, 2, 3]);
    g.values[2 * g.cols + 0] = NaN;
    g.values[3 * g.cols + 0] = 0.9;
    expect(sortOrder(g, 'pair:0')).toEqual([3, 0, 1, 2]);
  });

  it('permuteRows moves values, labels and notes together', () => {
    const g = unitsGrid(units(), 'count_share', 'all');
    g.rowNotes = ['a', 'b', 'c', 'd'];
    const p = permuteRows(g, [1, 3, 2, 0]);
    expect(p.rowLabels).toEqual(['1', '3', '2', '0']);
    expect(p.rowNotes).toEqual(['b', 'd', 'c', 'a']);
    expect(get(p, 0, 9)).toBe(1);
    expect(get(p, 3, 9)).toBe(0);
  });

  it('unit heatmap grid wraps the f32 body without copying', () => {
    const values = new Float32Array([0, 0.5, 1, NaN]);
    const g = unitHeatmapGrid({ steps: [0, 10], rows: 2, groupSize: 1, values }, 2);
    expect(g.values).toBe(values);
    expect(g.colLabels).toEqual(['0', '10']);
    expect(get(g, 1, 0)).toBe(1);
  });
});

describe('timeline grid', () => {
  it('is pairs (display order) x steps', () => {
    const nine = [1, 1, 1, 1, 1, 1, 1, 1, 1];
    const g = timelineGrid(
      {
        run: 'r', role: 'forward', layer: 'l', steps: [0, 5],
        counts: [nine, [9, 0, 0, 0, 0, 0, 0, 0, 0]], sums: [nine, nine], near_zero_counts: [nine, nine], near_zero_sums: [nine, nine],
        cells: [1, 1], near_zero_cells: [0, 0], near_zero_fraction: [0, 0],
      },
      'count_share',
      'all',
    );
    expect(g.rows).toBe(9);
    expect(g.cols).toBe(2);
    expect(g.rowLabels[0]).toBe('PP');
    expect(get(g, 0, 0)).toBeCloseTo(1 / 9, 15);
    expect(get(g, 0, 1)).toBe(1);
    expect(get(g, 1, 1)).toBe(0);
  });
});

describe('alignment of runs by layer name', () => {
  it('unions names keeping each run’s model order', () => {
    expect(alignNames([['a', 'b', 'c'], ['a', 'c']])).toEqual(['a', 'b', 'c']);
    expect(alignNames([['a', 'c'], ['a', 'b', 'c']])).toEqual(['a', 'b', 'c']);
    expect(alignNames([['x'], ['y']])).toEqual(['x', 'y']);
    expect(alignNames([['a', 'b'], ['c', 'a']])).toEqual(['c', 'a', 'b']);
  });

  it('reindex leaves absent rows missing with a note', () => {
    const g = heatmapGrid(heatmap());
    const r = reindex(g, ['dense_1', 'new', 'dense'], ['900', '0']);
    expect(r.rowNotes).toEqual([null, 'missing', null]);
    expect(get(r, 0, 0)).toBe(0.5);
    expect(Number.isNaN(get(r, 0, 1))).toBe(true); // dense_1 had no record at step 0
    expect(Number.isNaN(get(r, 1, 0))).toBe(true);
    expect(get(r, 2, 1)).toBe(0.1);
  });

  it('compare overview grids: a layer a run lacks is missing, not zero', () => {
    const [a, b] = compareOverviewGrids(compareOverview(), 'count_share', 'all');
    expect(a.rowLabels).toEqual(['dense', 'extra', 'dense_1']);
    expect(b.rowNotes).toEqual([null, 'missing', null]);
    for (let c = 0; c < b.cols; c++) expect(Number.isNaN(get(b, 1, c))).toBe(true);
    expect(get(b, 0, 9)).toBe(0.5);
  });

  it('compare heatmap grids keep each run’s own steps', () => {
    const [a, b] = compareHeatmapGrids(compareHeatmap());
    expect(a.colLabels).toEqual(['0', '100']);
    expect(b.colLabels).toEqual(['0', '50', '100']);
    expect(b.rowNotes).toEqual([null, 'missing']);
  });
});

describe('difference view A - B', () => {
  it('subtracts aligned cells and marks missing rows', () => {
    const [a, b] = compareOverviewGrids(compareOverview(), 'count_share', 'all');
    const d = differenceGrid(a, b, 'a', 'b');
    expect(d.rowLabels).toEqual(['dense', 'extra', 'dense_1']);
    expect(get(d, 0, 9)).toBeCloseTo(0.125 - 0.5, 15);
    expect(get(d, 0, 0)).toBe(0);
    expect(Number.isNaN(get(d, 1, 0))).toBe(true);
    expect(d.rowNotes).toEqual([null, 'missing in b', null]);
  });

  it('aligns steps by value and leaves unmatched steps missing', () => {
    const [a, b] = compareHeatmapGrids(compareHeatmap());
    const d = differenceGrid(a, b, 'a', 'b');
    expect(d.colLabels).toEqual(['0', '50', '100']);
    expect(get(d, 0, 0)).toBeCloseTo(0.1 - 0.05, 15);
    expect(Number.isNaN(get(d, 0, 1))).toBe(true); // a has no step 50
    expect(get(d, 0, 2)).toBeCloseTo(0.2 - 0.1, 15);
    expect(d.rowNotes).toEqual([null, 'missing in b']);
    const e = differenceGrid(b, a, 'b', 'a');
    expect(e.rowNotes).toEqual([null, 'missing in b']);
    expect(get(e, 0, 0)).toBeCloseTo(0.05 - 0.1, 15);
  });

  it('a row missing in both says so', () => {
    const [, b] = compareHeatmapGrids(compareHeatmap());
    expect(differenceGrid(b, b, 'x', 'y').rowNotes).toEqual([null, 'missing in both']);
  });
});
