/**
 * The nine operand-class pairs and the measures the tab colours them by.
 *
 * Pair index = 3 * class(first operand) + class(second operand), classes P=0, Z=1, N=2, which is the
 * `TERMS` order `PP PZ PN ZP ZZ ZN NP NZ NN`.
 */
import { TERMS, type Term } from './types';

export type Measure = 'count_share' | 'abs_sum_share' | 'signed_sum';
export type Scope = 'near_zero' | 'all';

export const MEASURES: { value: Measure; label: string; hint: string }[] = [
  { value: 'count_share', label: 'share of counts', hint: 'products in the pair / all products' },
  { value: 'abs_sum_share', label: 'share of |sums|', hint: '|sum of the pair| / sum over pairs of |sum|' },
  { value: 'signed_sum', label: 'signed sums', hint: 'the sum of the products in the pair' },
];

export const SCOPES: { value: Scope; label: string; hint: string }[] = [
  { value: 'near_zero', label: 'near-zero results', hint: 'only result cells that are near zero' },
  { value: 'all', label: 'all results', hint: 'every result cell' },
];

export const CLASS_NAMES = ['positive', 'near zero', 'negative'] as const;
export const CLASS_LETTERS = ['P', 'Z', 'N'] as const;

export function termIndex(t: Term): number {
  return TERMS.indexOf(t);
}

/** True for the five pairs with a near-zero operand (any Z). */
export function isNearZeroPair(t: Term | number): boolean {
  const term = typeof t === 'number' ? TERMS[t] : t;
  return term.includes('Z');
}

/**
 * Column order of the pair views: the four pairs without a near-zero operand, then the five with one
 * (first operand near zero, both, second operand near zero), so the near-zero pairs sit together.
 */
export const DISPLAY_GROUPS: { label: string; short: string; terms: Term[] }[] = [
  { label: 'no near-zero operand', short: 'no Z', terms: ['PP', 'PN', 'NP', 'NN'] },
  { label: 'a near-zero operand (Z)', short: 'Z operand', terms: ['ZP', 'ZN', 'ZZ', 'PZ', 'NZ'] },
];
export const DISPLAY_ORDER: number[] = DISPLAY_GROUPS.flatMap((g) => g.terms.map(termIndex));

/** Plain words for a pair, using the role's operand names, e.g. "input near zero × kernel positive". */
export function describePair(i: number, operands: readonly string[] = ['first', 'second']): string {
  const a = Math.floor(i / 3);
  const b = i % 3;
  return `${operands[0] ?? 'first'} ${CLASS_NAMES[a]} × ${operands[1] ?? 'second'} ${CLASS_NAMES[b]}`;
}

type Num = number | null;

function total(xs: readonly Num[]): number {
  let s = 0;
  for (const x of xs) s += x ?? NaN;
  return s;
}

function absTotal(xs: readonly Num[]): number {
  let s = 0;
  for (const x of xs) s += x === null ? NaN : Math.abs(x);
  return s;
}

/**
 * The nine values of `measure` for one (counts, sums) pair of arrays; null where a value is undefined
 * (no products; a non-finite sum, which the backend sends as null, makes every |sum| share undefined).
 */
export function measureValues(counts: readonly Num[], sums: readonly Num[], measure: Measure): (number | null)[] {
  if (measure === 'signed_sum') return sums.map((s) => (s === null || !Number.isFinite(s) ? null : s));
  if (measure === 'count_share') {
    const t = total(counts);
    return counts.map((c) => (t > 0 && c !== null ? c / t : null));
  }
  const t = absTotal(sums);
  return sums.map((s) => (t > 0 && Number.isFinite(t) && s !== null ? Math.abs(s) / t : null));
}

export interface PairStats {
  term: Term;
  count: number | null;
  countShare: number | null;
  sum: number | null;
  absSumShare: number | null;
  mean: number | null;
}

/** Exact numbers of one pair for tooltips and the 3x3 matrix. */
export function pairStats(counts: readonly Num[], sums: readonly Num[], i: number): PairStats {
  const ct = total(counts);
  const at = absTotal(sums);
  const c = counts[i];
  const s = sums[i];
  return {
    term: TERMS[i],
    count: c,
    countShare: ct > 0 && c !== null ? c / ct : null,
    sum: s,
    absSumShare: at > 0 && Number.isFinite(at) && s !== null ? Math.abs(s) / at : null,
    mean: c !== null && c > 0 && s !== null ? s / c : null,
  };
}

/** Picks the all-cells or near-zero-cells arrays of a record. */
export function scoped<T>(rec: { counts: T; sums: T; near_zero_counts: T; near_zero_sums: T }, scope: Scope): { counts: T; sums: T } {
  return scope === 'near_zero'
    ? { counts: rec.near_zero_counts, sums: rec.near_zero_sums }
    : { counts: rec.counts, sums: rec.sums };
}

export function measureLabel(m: Measure): string {
  return MEASURES.find((x) => x.value === m)?.label ?? m;
}
