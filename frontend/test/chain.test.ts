// @vitest-environment jsdom
/**
 * The layer chain card (views/chain.ts): steps in chain order with their key figures, absent roles absent (no
 * "NaN" boxes), a click opens the step's role; the overview's inactive column and the alert's link to its origin.
 */
import { describe, expect, it } from 'vitest';
import { initialState } from '../src/state';
import { withInactiveColumn, overviewGridOf } from '../src/transforms';
import { alertSelection } from '../src/views/alerts';
import { backwardSteps, chainCard, forwardSteps } from '../src/views/chain';
import { alert, layer } from './fixtures';

// hidden_2 of a dying-ReLU MLP: every unit inactive, the bias negative in all inactive cells; dJ/dz zero through f′.
const dying = {
  layer: 'hidden_2',
  activation: 'relu',
  producer: 'hidden_1',
  producerRecorded: true,
  totals: {
    input_features: layer('hidden_2', 1, { counts: Array(9).fill(0), sums: Array(9).fill(0), near_zero_counts: Array(9).fill(0), near_zero_sums: Array(9).fill(0), near_zero_fraction: 0.47, units: 16 }),
    forward: layer('hidden_2', 1, { near_zero_fraction: 0.05, units: 16 }),
    // 64 cells inactive, all with b in N: 32 with x·W positive (PN), 32 negative (NN).
    activation: layer('hidden_2', 1, { near_zero_counts: [0, 0, 32, 0, 0, 0, 0, 0, 32], near_zero_fraction: 1, dead_units: 16, units: 16 }),
    // f′ is zero (Z) in every cell, dJ/da is never zero.
    activation_gradient: layer('hidden_2', 1, { counts: [0, 30, 0, 0, 0, 0, 0, 34, 0], near_zero_counts: [0, 30, 0, 0, 0, 0, 0, 34, 0], near_zero_fraction: 1, dead_units: 16, units: 16 }),
    kernel_gradient: layer('hidden_2', 1, { near_zero_fraction: 1, dead_units: 16, units: 16 }),
  },
};

describe('chain steps', () => {
  it('lists the forward steps in chain order with their key figures', () => {
    const steps = forwardSteps(dying);
    expect(steps.map((s) => s.name)).toEqual(['input features', 'matmul x·W', 'bias', 'activation relu']);
    expect(steps[0].figure).toBe('47% near zero · from hidden_1');
    expect(steps[2].figure).toBe('b < 0 in 100% of inactive cells');
    expect(steps[3]).toMatchObject({ role: 'activation', figure: '100% inactive · 16 of 16 units dead', alarm: true });
    expect(steps[1].alarm).toBe(false);
  });

  it('names the layers between the producer and the layer that zero values (a Dropout)', () => {
    const steps = forwardSteps({ ...dying, zeroedBy: ['dropout'] });
    expect(steps[0].figure).toBe('47% near zero · from hidden_1 through dropout (sets values to zero)');
  });

  it('says dJ/dz is near zero because of f′, and lists dJ/dW; dJ/dx is absent when not recorded', () => {
    const steps = backwardSteps(dying);
    expect(steps.map((s) => s.name)).toEqual(['dJ/da', 'f′(z)', 'dJ/dz', 'dJ/dW']);
    expect(steps[0].figure).toBe('0% near zero');
    expect(steps[1].figure).toBe('100% near zero');
    expect(steps[2].figure).toBe('100% near zero · from f′ (100%)');
    expect(steps[3].figure).toBe('100% near zero · 16 of 16 units without gradient'); // (not "dead": none arrives)
  });

  it('names the operands of attention\'s einsums', () => {
    const part = (op: string) => ({
      layer: op,
      totals: Object.fromEntries(['forward', 'kernel_gradient', 'input_gradient'].map((r) => [r, layer(op, 0, { op })])),
    });
    expect([...forwardSteps(part('attention_scores')), ...backwardSteps(part('attention_scores'))].map((s) => s.name)).toEqual(
      ['scores Q·Kᵀ', 'dJ/dK', 'dJ/dQ']);
    expect([...forwardSteps(part('attention_values')), ...backwardSteps(part('attention_values'))].map((s) => s.name)).toEqual(
      ['output A·V', 'dJ/dV', 'dJ/dA']);
  });

  it('leaves out the steps of roles a layer does not have', () => {
    const logits = { layer: 'logits', producer: 'relu_1', producerRecorded: false, totals: { forward: layer('logits', 2), input_features: layer('logits', 2, { dead_units: 16, units: 16, near_zero_fraction: 1 }) } };
    expect(forwardSteps(logits).map((s) => s.name)).toEqual(['input features', 'matmul x·W']);
    expect(forwardSteps(logits)[0].figure).toBe('100% near zero · 16 of 16 features dead · from relu_1 (no records of its own)');
    expect(backwardSteps(logits)).toEqual([]);
    expect(chainCard({ layer: 'x', totals: {} }, 'forward', () => undefined)).toBeNull();
  });
});

describe('chain card', () => {
  it('draws each present step once, no NaN, marks the current role, and a click opens its role', () => {
    const opened: string[] = [];
    const card = chainCard(dying, 'activation', (role) => opened.push(role))!;
    const steps = [...card.querySelectorAll<HTMLButtonElement>('.mmx-chain-step')];
    expect(steps.map((b) => b.dataset.step)).toEqual(['input features', 'matmul x·W', 'bias', 'activation relu', 'dJ/da', 'f′(z)', 'dJ/dz', 'dJ/dW']);
    expect(card.textContent).not.toMatch(/NaN|undefined|null/);
    expect(card.querySelectorAll('[aria-current="true"]').length).toBe(2); // bias and activation: both the activation role
    const act = steps.find((b) => b.dataset.step === 'activation relu')!;
    expect(act.classList.contains('mmx-chain-alarm')).toBe(true);
    expect(act.textContent).toContain('16 of 16 units dead');
    steps.find((b) => b.dataset.step === 'dJ/dW')!.click();
    steps[0].click();
    expect(opened).toEqual(['kernel_gradient', 'input_features']);
  });
});

describe('overview inactive column and alert links', () => {
  it('adds the inactive share as a last column, NaN where a layer has no activation, none for a run without', () => {
    const ov = { run: 'r', role: 'forward', step: 1, layers: [layer('a', 0, { inactive_fraction: 0.5 }), layer('b', 1, { inactive_fraction: null })] };
    const g = withInactiveColumn(overviewGridOf(ov, 'count_share', 'all'), ov.layers);
    expect(g.cols).toBe(11);
    expect(g.colLabels[10]).toBe('inactive');
    expect(g.values[10]).toBe(0.5);
    expect(Number.isNaN(g.values[21])).toBe(true);
    const old = { ...ov, layers: [layer('a', 0)] };
    expect(withInactiveColumn(overviewGridOf(old, 'count_share', 'all'), old.layers).cols).toBe(10);
  });

  it('opens an alert at its origin, or where a producer without records was seen', () => {
    const s = { ...initialState(), steps: [0, 1, 2] };
    expect(alertSelection(s, alert({ layer: 'hidden_2', role: 'activation', first_step: 0, open: { layer: 'hidden_2', role: 'activation', tag: 't' } }))).toEqual({ layer: 'hidden_2', role: 'activation', step: 0 });
    const relu = alert({ layer: 'relu_1', role: 'input_features', seen_in: 'logits', first_step: 1, open: { layer: 'logits', role: 'input_features', tag: 't' } });
    expect(alertSelection(s, relu)).toEqual({ layer: 'logits', role: 'input_features', step: 1 });
    expect(alertSelection(s, alert({ layer: 'd', role: 'forward', first_step: 1 }))).toMatchObject({ layer: 'd', role: 'forward' }); // older backends
  });
});
