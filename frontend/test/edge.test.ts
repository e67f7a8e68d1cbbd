/** Layers that were not recorded (/runs `notRecorded`) and non-finite values: the pure logic behind their notices. */
import { describe, expect, it } from 'vitest';
import { nonFiniteText } from '../src/format';
import { notRecordedOf } from '../src/state';
import { nonFiniteSteps } from '../src/transforms';
import type { RunInfo, TimelineResponse } from '../src/types';

const run = (extra: Record<string, unknown>): RunInfo => ({ run: 'r', roles: ['forward'], layers: [], ...extra });

describe('notRecordedOf', () => {
  it('a backend without the field, or with a value that is not a list, means none', () => {
    expect(notRecordedOf(undefined)).toEqual([]);
    expect(notRecordedOf(run({}))).toEqual([]);
    expect(notRecordedOf(run({ notRecorded: null }))).toEqual([]);
    expect(notRecordedOf(run({ notRecorded: 'dilated' }))).toEqual([]);
    expect(notRecordedOf(run({ notRecorded: { layer: 'x', reason: 'y' } }))).toEqual([]);
  });

  it('keeps the backend order and text, drops entries without a layer name, fills a missing reason', () => {
    const items = [
      { layer: 'dilated', reason: 'dilation_rate=(2,) is not supported (dilation 1 only)' },
      null,
      7,
      { reason: 'no layer' },
      { layer: '', reason: 'empty name' },
      { layer: 3, reason: 'numeric name' },
      { layer: '<b>x</b>', reason: '<i>why</i>' },
      { layer: 'lstm' },
      { layer: 'gru', reason: 42 },
    ];
    expect(notRecordedOf(run({ notRecorded: items }))).toEqual([
      { layer: 'dilated', reason: 'dilation_rate=(2,) is not supported (dilation 1 only)' },
      { layer: '<b>x</b>', reason: '<i>why</i>' },
      { layer: 'lstm', reason: 'no reason given' },
      { layer: 'gru', reason: 'no reason given' },
    ]);
  });
});

describe('nonFiniteText', () => {
  it('names only the operands and result with non-finite values', () => {
    expect(nonFiniteText([0, 0, 0], ['input', 'kernel'])).toBe('');
    expect(nonFiniteText([3, 0, 12], ['input', 'kernel'])).toBe('input 3, result 12');
    expect(nonFiniteText([0, 5, 0], ['input', 'output gradient'])).toBe('output gradient 5');
    expect(nonFiniteText([1, 2, 3], [])).toBe('first operand 1, second operand 2, result 3');
  });
});

describe('nonFiniteSteps', () => {
  const nine = (v: number | null) => Array.from({ length: 9 }, () => v);
  const timeline = (sums: (number | null)[][], nzSums: (number | null)[][], fractions: (number | null)[]): TimelineResponse => ({
    run: 'r',
    role: 'forward',
    layer: 'l',
    steps: [0, 1, 2, 3],
    counts: sums.map(() => nine(1)) as number[][],
    sums,
    near_zero_counts: sums.map(() => nine(0)) as number[][],
    near_zero_sums: nzSums,
    cells: [1, 1, 1, 1],
    near_zero_cells: [0, 0, 0, 0],
    near_zero_fraction: fractions,
  });

  it('lists the steps where a sum (all cells or near-zero cells) is null, i.e. NaN or inf', () => {
    const withNull = [1, 1, 1, 1, null, 1, 1, 1, 1];
    const t = timeline([nine(1), withNull, nine(1), nine(1)], [nine(0), nine(0), nine(0), withNull], [0, 0, 0, 0]);
    expect(nonFiniteSteps(t)).toEqual([1, 3]);
  });

  it('a null near-zero fraction (no cells) is not a non-finite value', () => {
    expect(nonFiniteSteps(timeline([nine(1), nine(1), nine(1), nine(1)], [nine(0), nine(0), nine(0), nine(0)], [null, null, 0, 0]))).toEqual([]);
  });
});
