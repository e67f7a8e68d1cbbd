/** The text the views show for one pair: tooltip rows with its exact numbers. */
import { exact, pct } from '../format';
import type { PairStats, Scope } from '../pairs';
import type { TooltipRow } from '../tooltip';

/** Tooltip rows with the exact numbers of one pair. */
export function pairRows(p: PairStats, scope: Scope): TooltipRow[] {
  return [
    { label: 'count', value: exact(p.count) },
    { label: 'share of counts', value: p.countShare === null ? '–' : `${exact(p.countShare)} (${pct(p.countShare, 2)})` },
    { label: 'sum', value: exact(p.sum) },
    { label: 'share of |sums|', value: p.absSumShare === null ? '–' : `${exact(p.absSumShare)} (${pct(p.absSumShare, 2)})` },
    { label: 'mean', value: exact(p.mean) },
    { label: 'cells', value: scope === 'near_zero' ? 'near-zero results' : 'all results' },
  ];
}
