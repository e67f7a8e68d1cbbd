import { describe, expect, it } from 'vitest';
import { colX, computeLayout, hitTest, labelMargin, thinTicks, truncate } from '../src/layout';

describe('layout', () => {
  it('sizes cells to the available width and height within bounds', () => {
    const l = computeLayout({ rows: 1024, cols: 200, maxPlotWidth: 800, maxPlotHeight: 512, minCellH: 0.25, maxCellW: 30 });
    expect(l.cellW).toBe(4);
    expect(l.cellH).toBe(0.5);
    expect(l.plotW).toBe(800);
    expect(l.plotH).toBe(512);
    const small = computeLayout({ rows: 2, cols: 9, maxPlotWidth: 2000, maxPlotHeight: 500, maxCellW: 44, maxCellH: 22 });
    expect(small.cellW).toBe(44);
    expect(small.cellH).toBe(22);
  });

  it('column groups are separated by gaps', () => {
    const l = computeLayout({ rows: 3, cols: 10, groups: [4, 5, 1], gap: 10, maxPlotWidth: 1000, maxPlotHeight: 60, maxCellW: 20, maxCellH: 20 });
    expect(l.groupX).toEqual([0, 90, 200]);
    expect(l.plotW).toBe(10 * 20 + 20);
    expect(colX(l, 3)).toBe(60);
    expect(colX(l, 4)).toBe(90);
    expect(colX(l, 9)).toBe(200);
  });

  it('groups that do not add up are ignored', () => {
    const l = computeLayout({ rows: 1, cols: 5, groups: [2, 2], maxPlotWidth: 100, maxPlotHeight: 10 });
    expect(l.groups).toEqual([5]);
    expect(l.gap).toBe(0);
  });

  it('hit-tests cells, and nothing in gaps or outside', () => {
    const l = computeLayout({ rows: 3, cols: 10, groups: [4, 5, 1], gap: 10, maxPlotWidth: 1000, maxPlotHeight: 60, maxCellW: 20, maxCellH: 20 });
    expect(hitTest(l, 5, 5)).toEqual({ row: 0, col: 0 });
    expect(hitTest(l, 85, 25)).toBeNull(); // gap
    expect(hitTest(l, 95, 45)).toEqual({ row: 2, col: 4 });
    expect(hitTest(l, 205, 59.9)).toEqual({ row: 2, col: 9 });
    expect(hitTest(l, -1, 5)).toBeNull();
    expect(hitTest(l, 5, 60)).toBeNull();
  });

  it('hit-tests sub-pixel rows', () => {
    const l = computeLayout({ rows: 1024, cols: 200, maxPlotWidth: 800, maxPlotHeight: 512, minCellH: 0.25 });
    expect(hitTest(l, 0, 511.9)).toEqual({ row: 1023, col: 0 });
    expect(hitTest(l, 799, 0.6)).toEqual({ row: 1, col: 199 });
  });

  it('thins tick labels to a minimum spacing and keeps the last', () => {
    expect(thinTicks(5, 20, 10)).toEqual([0, 1, 2, 3, 4]);
    expect(thinTicks(10, 2, 10)).toEqual([0, 9]); // 5 and 9 would overlap: the last wins
    expect(thinTicks(20, 2, 10)).toEqual([0, 5, 10, 19]);
    expect(thinTicks(1024, 0.5, 13)).toContain(1023);
    expect(thinTicks(0, 1, 1)).toEqual([]);
  });

  it('truncates long labels and sizes the margin', () => {
    expect(truncate('abcdef', 4)).toBe('abc…');
    expect(truncate('abc', 4)).toBe('abc');
    expect(labelMargin(['a'])).toBe(36);
    expect(labelMargin(['x'.repeat(200)])).toBeLessThanOrEqual(220);
  });
});
