import { describe, expect, it } from 'vitest';
import { compact, exact, pct, signedPoints } from '../src/format';
import { groupLabel } from '../src/heatmap';

describe('formatting', () => {
  it('exact values read back as the same double', () => {
    for (const v of [0.1 + 0.2, 1e-7, 123456789.123, -3.5e-12]) expect(Number(exact(v))).toBe(v);
    expect(exact(null)).toBe('–');
    expect(exact(NaN)).toBe('–');
    expect(exact(-0)).toBe('0');
  });

  it('percentages never show -0', () => {
    expect(pct(0.1234, 1)).toBe('12.3%');
    expect(pct(-0.001, 0)).toBe('0%');
    expect(pct(null)).toBe('–');
    expect(signedPoints(0.126)).toBe('+13');
    expect(signedPoints(-0.004)).toBe('0');
    expect(signedPoints(-0.5)).toBe('-50');
  });

  it('compact numbers', () => {
    expect(compact(0)).toBe('0');
    expect(compact(1234567)).toBe('1.2e6');
    expect(compact(0.5)).toBe('0.50');
    expect(compact(-42.25)).toBe('-42.3');
    expect(compact(Infinity)).toBe('+inf');
  });

  it('group labels fall back to the short label when they do not fit', () => {
    const g = { label: 'a near-zero operand (Z)', shortLabel: 'Z operand', count: 5 };
    expect(groupLabel(g, 400)).toBe('a near-zero operand (Z)');
    expect(groupLabel(g, 100)).toBe('Z operand');
    expect(groupLabel({ label: 'long label without short', count: 1 }, 10)).toBe('long label without short');
  });
});
