/**
 * The layer as a chain: forward `input features -> matmul (x·W) -> bias -> activation`, backward
 * `dJ/da -> f′ -> dJ/dz -> dJ/dW and dJ/dx`, one compact card with each step's key figure (from the layer's totals
 * of each role at the step, as /overview gives them). Each step opens its role's detail; a step whose role the layer
 * does not have (no activation of its own, a role not recorded, no record at the step) is absent. A matmul between
 * two activations (attention's einsums, by their op) names its operands instead of x, W.
 */
import { el } from '../dom';
import { pct } from '../format';
import { roleLabel } from '../state';
import type { LayerTotals } from '../types';

/** One step of the chain: the role it opens, its name, its key figure, and whether that figure is alarming. */
export interface ChainStep {
  role: string;
  name: string;
  figure: string;
  alarm: boolean;
}

/** A layer's totals per role at the step (absent: the layer has no record of that role there), and its metadata. */
export interface ChainInput {
  layer: string;
  totals: Partial<Record<string, LayerTotals>>;
  /** Keras name of the activation function, if the layer has one of its own. */
  activation?: string | null;
  /** The layer that produced its input, and whether the run holds records of that layer. */
  producer?: string | null;
  producerRecorded?: boolean;
  /** Layers between the producer and the layer that set values to exactly zero (Dropout, ZeroPadding). */
  zeroedBy?: string[];
}

/** A near-zero share at or above this is alarming in a step that is not the activation (ReLU makes ~half). */
const ALARM = 0.9;

// Pair indices in TERMS order (PP PZ PN ZP ZZ ZN NP NZ NN): first letter = first operand.
const FIRST_Z = [3, 4, 5];
const FIRST_Z_ONLY = [3, 5];
const SECOND_Z = [1, 4, 7];
const SECOND_N = [2, 5, 8];

function share(values: readonly number[], picked: number[]): number | null {
  let total = 0;
  let part = 0;
  values.forEach((v, i) => {
    total += v;
    if (picked.includes(i)) part += v;
  });
  return total > 0 ? part / total : null;
}

/** The names of the forward, kernel-gradient and input-gradient steps of a matmul, by its op. */
const MATMUL_STEPS: Record<string, [string, string, string]> = {
  attention_scores: ['scores Q·Kᵀ', 'dJ/dK', 'dJ/dQ'],
  attention_values: ['output A·V', 'dJ/dV', 'dJ/dA'],
};
const DEFAULT_STEPS: [string, string, string] = ['matmul x·W', 'dJ/dW', 'dJ/dx'];

function stepName(t: LayerTotals, role: 0 | 1 | 2): string {
  return (MATMUL_STEPS[t.op] ?? DEFAULT_STEPS)[role];
}

function dead(t: LayerTotals, what: string, state = 'dead'): string {
  return t.dead_units ? ` · ${t.dead_units} of ${t.units} ${what} ${state}` : '';
}

/** A gradient near zero in every cell of a unit is none, not a "dead" unit. */
function nearZero(t: LayerTotals, name: string, role: string, what = 'near zero'): ChainStep {
  const state = role === 'forward' ? 'dead' : 'without gradient';
  return { role, name, figure: `${pct(t.near_zero_fraction, 0)} ${what}${dead(t, 'units', state)}`, alarm: t.dead_units > 0 || (t.near_zero_fraction ?? 0) >= ALARM };
}

/** The forward steps present for the layer, in chain order. */
export function forwardSteps(c: ChainInput): ChainStep[] {
  const out: ChainStep[] = [];
  const x = c.totals.input_features;
  if (x) {
    const from = c.producer ? ` · from ${c.producer}${c.producerRecorded === false ? ' (no records of its own)' : ''}` : '';
    const through = c.zeroedBy?.length ? ` through ${c.zeroedBy.join(', ')} (sets values to zero)` : '';
    out.push({ role: 'input_features', name: 'input features', figure: `${pct(x.near_zero_fraction, 0)} near zero${dead(x, 'features')}${from}${through}`, alarm: x.dead_units > 0 });
  }
  const m = c.totals.forward;
  if (m) out.push(nearZero(m, stepName(m, 0), 'forward', 'results near zero'));
  const a = c.totals.activation;
  if (a) {
    const negative = share(a.near_zero_counts, SECOND_N);
    if (negative !== null) out.push({ role: 'activation', name: 'bias', figure: `b < 0 in ${pct(negative, 0)} of inactive cells`, alarm: a.dead_units > 0 && negative >= 0.5 });
    out.push({ role: 'activation', name: `activation ${c.activation ?? 'f'}`, figure: `${pct(a.near_zero_fraction, 0)} inactive${dead(a, 'units')}`, alarm: a.dead_units > 0 });
  }
  return out;
}

/** The backward steps present for the layer, in chain order (dJ/dW and dJ/dx both follow dJ/dz). */
export function backwardSteps(c: ChainInput): ChainStep[] {
  const out: ChainStep[] = [];
  const g = c.totals.activation_gradient;
  if (g) {
    const da = share(g.counts, FIRST_Z);
    const fp = share(g.counts, SECOND_Z);
    if (da !== null) out.push({ role: 'activation_gradient', name: 'dJ/da', figure: `${pct(da, 0)} near zero`, alarm: da >= ALARM });
    if (fp !== null) out.push({ role: 'activation_gradient', name: 'f′(z)', figure: `${pct(fp, 0)} near zero`, alarm: fp >= ALARM });
    const fromF = share(g.near_zero_counts, SECOND_Z);
    const fromDa = share(g.near_zero_counts, FIRST_Z_ONLY);
    const why = fromF === null ? '' : fromF >= (fromDa ?? 0) ? ` · from f′ (${pct(fromF, 0)})` : ` · from dJ/da (${pct(fromDa, 0)})`;
    out.push({ ...nearZero(g, 'dJ/dz', 'activation_gradient'), figure: `${pct(g.near_zero_fraction, 0)} near zero${why}` });
  }
  const { kernel_gradient: dw, input_gradient: dx } = c.totals;
  if (dw) out.push(nearZero(dw, stepName(dw, 1), 'kernel_gradient'));
  if (dx) out.push(nearZero(dx, stepName(dx, 2), 'input_gradient'));
  return out;
}

/** The chain card: one row forward, one backward; `open(role)` is called when a step is clicked (or Enter). */
export function chainCard(c: ChainInput, current: string, open: (role: string) => void): HTMLElement | null {
  const rows: [string, ChainStep[]][] = [
    ['forward', forwardSteps(c)],
    ['backward', backwardSteps(c)],
  ];
  if (!rows.some(([, steps]) => steps.length)) return null;
  const card = el('div', 'mmx-card mmx-chain');
  card.dataset.layer = c.layer;
  card.appendChild(el('div', 'mmx-diagnosis-label', `${c.layer} as a chain · click a step to open it`));
  for (const [direction, steps] of rows) {
    if (!steps.length) continue;
    const row = el('div', 'mmx-chain-row');
    row.dataset.direction = direction;
    row.appendChild(el('span', 'mmx-chain-direction', direction));
    steps.forEach((step, i) => {
      if (i) row.appendChild(el('span', 'mmx-chain-arrow', direction === 'backward' && i === steps.length - 1 && step.role === 'input_gradient' && steps[i - 1].role === 'kernel_gradient' ? 'and' : '→'));
      row.appendChild(stepBox(step, step.role === current, open));
    });
    card.appendChild(row);
  }
  return card;
}

function stepBox(step: ChainStep, current: boolean, open: (role: string) => void): HTMLElement {
  const box = el('button', 'mmx-chain-step');
  box.type = 'button';
  box.dataset.role = step.role;
  box.dataset.step = step.name;
  if (step.alarm) box.classList.add('mmx-chain-alarm');
  if (current) box.setAttribute('aria-current', 'true');
  box.title = `Open ${roleLabel(step.role)}`;
  box.append(el('span', 'mmx-chain-name', step.name), el('span', 'mmx-chain-figure', step.figure));
  box.addEventListener('click', () => open(step.role));
  return box;
}
