import { describe, expect, it } from 'vitest';
import { DISPLAY_GROUPS, DISPLAY_ORDER, describePair, isNearZeroPair, measureValues, pairStats, scoped } from '../src/pairs';
import { TERMS } from '../src/types';
import { layer } from './fixtures';

describe('pairs', () => {
  it('TERMS index is 3 * first class + second class (P=0, Z=1, N=2)', () => {
    const letters = ['P', 'Z', 'N'];
    TERMS.forEach((t, i) => expect(t).toBe(letters[Math.floor(i / 3)] + letters[i % 3]));
  });

  it('display order is a permutation that groups the five near-zero pairs last', () => {
    expect([...DISPLAY_ORDER].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    const flags = DISPLAY_ORDER.map((i) => isNearZeroPair(i));
    expect(flags).toEqual([false, false, false, false, true, true, true, true, true]);
    expect(DISPLAY_GROUPS.map((g) => g.terms.length)).toEqual([4, 5]);
    expect(TERMS.filter((t) => isNearZeroPair(t))).toEqual(['PZ', 'ZP', 'ZZ', 'ZN', 'NZ']);
  });

  it('share of counts divides by the total; null when there are no products', () => {
    expect(measureValues([1, 3, 0, 0, 0, 0, 0, 0, 4], [0, 0, 0, 0, 0, 0, 0, 0, 0], 'count_share')).toEqual([0.125, 0.375, 0, 0, 0, 0, 0, 0, 0.5]);
    expect(measureValues(new Array(9).fill(0), new Array(9).fill(0), 'count_share')).toEqual(new Array(9).fill(null));
  });

  it('share of |sums| uses magnitudes; signed sums are the sums', () => {
    const sums = [2, 0, -2, 0, 0, 0, 0, 0, 4];
    expect(measureValues(new Array(9).fill(1), sums, 'abs_sum_share')).toEqual([0.25, 0, 0.25, 0, 0, 0, 0, 0, 0.5]);
    expect(measureValues(new Array(9).fill(1), sums, 'signed_sum')).toEqual(sums);
  });

  it('pairStats gives exact count, shares, sum and mean', () => {
    const l = layer('d', 0);
    const p = pairStats(l.counts, l.sums, 0);
    expect(p).toMatchObject({ term: 'PP', count: 40, countShare: 40 / 160, sum: 8, mean: 0.2 });
    expect(p.absSumShare).toBeCloseTo(8 / 25.6, 12);
    expect(pairStats(l.counts, l.sums, 4).mean).toBe(0);
    expect(pairStats([0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0], 4)).toMatchObject({ countShare: null, mean: null, absSumShare: null });
  });

  it('scoped picks near-zero or all-cell arrays', () => {
    const l = layer('d', 0);
    expect(scoped(l, 'near_zero').counts).toBe(l.near_zero_counts);
    expect(scoped(l, 'all').sums).toBe(l.sums);
  });

  it('describes pairs with the role operand names', () => {
    expect(describePair(3, ['input', 'kernel'])).toBe('input near zero × kernel positive');
    expect(describePair(8)).toBe('first negative × second negative');
  });
});
