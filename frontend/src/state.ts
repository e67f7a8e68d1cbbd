/**
 * The tab's state and a minimal store. Views read state; controls and clicks write it through `set`, and
 * every subscriber hears which keys changed so it refetches or redraws only what it must.
 */
import type { Measure, Scope } from './pairs';
import type { DivergingScheme, SequentialScheme } from './scales';
import type { UnitSort } from './transforms';
import { type NotRecorded, ROLES, type RunInfo } from './types';

export interface State {
  /** All runs with our data, as /runs lists them (their order fixes each run's colour). */
  runs: RunInfo[];
  /** Selected runs in selection order; the first is the one the single-run views show. */
  selected: string[];
  role: string;
  measure: Measure;
  scope: Scope;
  /** Selected step; null = follow the latest step. */
  step: number | null;
  /** Steps of the primary run's role (union over layers), ascending. */
  steps: number[];
  /** Layer shown in the layer detail (null = let the view choose). */
  layer: string | null;
  unitSort: UnitSort;
  sequential: SequentialScheme;
  diverging: DivergingScheme;
  /** The two runs of the difference view A - B (defaults: first two selected). */
  diffA: string | null;
  diffB: string | null;
}

export type Key = keyof State;
export type Listener = (s: State, changed: Set<Key>) => void;

export function initialState(): State {
  return {
    runs: [],
    selected: [],
    role: 'forward',
    measure: 'count_share',
    scope: 'near_zero',
    step: null,
    steps: [],
    layer: null,
    unitSort: 'near_zero',
    sequential: 'viridis',
    diverging: 'RdBu',
    diffA: null,
    diffB: null,
  };
}

export class Store {
  private s: State;
  private listeners: Listener[] = [];

  constructor(init: State = initialState()) {
    this.s = init;
  }

  get(): State {
    return this.s;
  }

  set(patch: Partial<State>): void {
    const changed = new Set<Key>();
    for (const k of Object.keys(patch) as Key[]) {
      if (!sameValue(this.s[k], patch[k])) changed.add(k);
    }
    if (!changed.size) return;
    this.s = { ...this.s, ...patch };
    for (const l of this.listeners.slice()) l(this.s, changed);
  }

  subscribe(fn: Listener): () => void {
    this.listeners.push(fn);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
    };
  }
}

function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => x === b[i]);
  return a === b;
}

/** Roles available for the selected runs (in the canonical order, then any others). */
export function availableRoles(s: State): string[] {
  const order: readonly string[] = ROLES;
  const set = new Set<string>();
  for (const r of s.runs) if (s.selected.includes(r.run)) for (const role of r.roles) set.add(role);
  return [...order.filter((r) => set.has(r)), ...[...set].filter((r) => !order.includes(r)).sort()];
}

/** The patch that selects `step` of `steps` (ascending): its last step selects null, i.e. follow the latest. */
export function stepPatch(steps: readonly number[], step: number): Pick<State, 'step'> {
  return { step: step === steps[steps.length - 1] ? null : step };
}

export function runIndex(s: State, run: string): number {
  return s.runs.findIndex((r) => r.run === run);
}

export function runInfo(s: State, run: string | undefined): RunInfo | undefined {
  return s.runs.find((r) => r.run === run);
}

/**
 * The layers of a run that were not recorded (or, with `field` 'partlyRecorded', recorded only in part), with their
 * reasons, as /runs lists them. A backend without the field (or a value that is not a list) means none; an entry
 * without a string layer name is left out, and one without a string reason gets a generic one.
 */
export function notRecordedOf(info: RunInfo | undefined, field: 'notRecorded' | 'partlyRecorded' = 'notRecorded'): NotRecorded[] {
  const list: unknown = info?.[field];
  if (!Array.isArray(list)) return [];
  const out: NotRecorded[] = [];
  for (const item of list) {
    if (item === null || typeof item !== 'object') continue;
    const { layer, reason } = item as Record<string, unknown>;
    if (typeof layer !== 'string' || !layer) continue;
    out.push({ layer, reason: typeof reason === 'string' && reason ? reason : 'no reason given' });
  }
  return out;
}

/** Operand names of the role for a layer (e.g. ["input", "kernel"]), from /runs. */
export function operandsOf(s: State, run: string, layer: string | null, role: string): string[] {
  const info = runInfo(s, run);
  const l = info?.layers.find((x) => x.name === layer) ?? info?.layers.find((x) => x.roles[role]);
  const ops = l?.roles[role]?.operands;
  if (ops && ops.length === 2) return ops.map((o) => String(o).replace(/_/g, ' '));
  const defaults: Record<string, string[]> = {
    forward: ['input', 'kernel'],
    kernel_gradient: ['input', 'output gradient'],
    input_gradient: ['output gradient', 'kernel'],
    activation: ['matmul', 'bias'],
    activation_gradient: ['activation output gradient', 'activation derivative'],
    input_features: ['input', 'none'],
  };
  return defaults[role] ?? ['first', 'second'];
}

export const ROLE_LABELS: Record<string, string> = {
  forward: 'forward (outputs)',
  kernel_gradient: 'kernel gradient',
  input_gradient: 'input gradient',
  activation: 'activation (inactive = near zero)',
  activation_gradient: 'activation gradient (dJ/dz)',
  input_features: 'input features',
};

export function roleLabel(role: string): string {
  return ROLE_LABELS[role] ?? role;
}
