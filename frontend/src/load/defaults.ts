/**
 * The loader layer's writes: the defaults the state gets from the data, so that views only draw. The runs patch
 * (a selection and role that exist), the step slider's steps (from the primary run's /heatmap), a role the
 * selected runs have, and the layer detail's layer (the one with the largest near-zero fraction at the step when
 * none is chosen or the chosen one has no record there).
 */
import { type State, type Store, availableRoles } from '../state';
import type { LayerTotals, OverviewResponse, RunInfo } from '../types';
import type { DataSource } from './data';

/** The state patch for a (re)loaded run list: selected runs that still exist (else the first run), a role they have. */
export function runsPatch(prev: State, runs: RunInfo[]): Partial<State> {
  const selected = prev.selected.filter((r) => runs.some((u) => u.run === r));
  const next: Partial<State> = { runs, selected: selected.length ? selected : [runs[0].run] };
  const roles = availableRoles({ ...prev, ...next });
  if (!roles.includes(prev.role)) next.role = roles[0] ?? 'forward';
  return next;
}

/** The layer with the largest near-zero result fraction (null: no layers). */
export function worstLayer(ov: OverviewResponse): string | null {
  const worst = ov.layers.reduce<LayerTotals | null>((a, l) => (!a || (l.near_zero_fraction ?? -1) > (a.near_zero_fraction ?? -1) ? l : a), null);
  return worst?.name ?? null;
}

const LAYER_KEYS: (keyof State)[] = ['runs', 'selected', 'role', 'step', 'layer'];

export class Defaults {
  constructor(
    private store: Store,
    private data: DataSource,
  ) {}

  /**
   * Applies the defaults a change calls for. Returns true when it patched the state synchronously (that patch
   * has been announced to every subscriber, so this change need not be drawn).
   */
  onChange(s: State, changed: Set<keyof State> | 'all'): boolean {
    if (changed === 'all' || changed.has('selected') || changed.has('role')) {
      const roles = availableRoles(s);
      if (roles.length && !roles.includes(s.role)) {
        this.store.set({ role: roles[0] });
        return true;
      }
      if (changed !== 'all') void this.refreshSteps();
    }
    if (changed === 'all' || LAYER_KEYS.some((k) => changed.has(k))) this.chooseLayer(s);
    return false;
  }

  /** Steps of the primary run's role for the slider (union over layers); a step at or past the last = latest. */
  async refreshSteps(): Promise<void> {
    const s = this.store.get();
    if (!s.selected[0]) return;
    try {
      const h = await this.data.whereWhen(s);
      const now = this.store.get();
      if (now.selected[0] !== s.selected[0] || now.role !== s.role) return;
      const step = s.step !== null && h.steps.length && s.step >= h.steps[h.steps.length - 1] ? null : s.step;
      this.store.set({ steps: h.steps, step });
    } catch {
      this.store.set({ steps: [] }); // the views show the error themselves
    }
  }

  /** Sets the layer detail's layer when `s.layer` is unset or absent at the step (errors: the views show them). */
  private chooseLayer(s: State): void {
    if (!s.selected[0]) return;
    this.data.overview(s).then(
      (ov) => {
        const now = this.store.get();
        const moved = now.selected[0] !== s.selected[0] || now.role !== s.role || now.step !== s.step || now.layer !== s.layer;
        if (moved || ov.layers.some((l) => l.name === s.layer)) return;
        const layer = worstLayer(ov);
        if (layer) this.store.set({ layer });
      },
      () => undefined,
    );
  }
}
