/**
 * The loader layer's reads: the data each view draws, keyed on the state. Each method derives the route and its
 * arguments from the state (primary run = `selected[0]`, role, step, layer) and returns the api's cached answer, so
 * views that show the same data share one request. Callers check that a run is selected (and, where named, a
 * layer) before asking.
 */
import type { Api } from '../api';
import { type State, runInfo } from '../state';
import type { ChainInput } from '../views/chain';
import type {
  AlertsResponse,
  CompareHeatmapResponse,
  CompareOverviewResponse,
  DiagnosisResponse,
  HeatmapResponse,
  LayerTotals,
  OverviewResponse,
  TimelineResponse,
  UnitHeatmap,
  UnitsResponse,
} from '../types';

/** At most this many runs are compared. */
export const MAX_COMPARED = 8;

/** The layer detail's layer at the state's step: the model's layer names and the chosen layer's totals. */
export interface LayerAtStep {
  names: string[];
  /** Null when `state.layer` is unset or has no record at the step (the defaults then choose one). */
  totals: LayerTotals | null;
}

function primary(s: State): string {
  const run = s.selected[0];
  if (!run) throw new Error('state.selected is empty: no run to load');
  return run;
}

function layerOf(s: State): string {
  if (!s.layer) throw new Error('state.layer is null: no layer to load');
  return s.layer;
}

export class DataSource {
  constructor(readonly api: Api) {}

  /** The primary run's ranked alerts at each layer's latest record. */
  alerts(s: State): Promise<AlertsResponse> {
    return this.api.alerts(primary(s));
  }

  /** Every layer's diagnosis line at the step; null when /alerts fails (the alerts panel shows that error). */
  diagnosisLines(s: State): Promise<AlertsResponse | null> {
    return this.api.alerts(primary(s), s.step).catch(() => null);
  }

  overview(s: State): Promise<OverviewResponse> {
    return this.api.overview(primary(s), s.role, s.step);
  }

  /** Layers x steps of the near-zero fraction (also the step slider's steps). */
  whereWhen(s: State): Promise<HeatmapResponse> {
    return this.api.heatmap(primary(s), s.role);
  }

  async layerAtStep(s: State): Promise<LayerAtStep> {
    const ov = await this.overview(s);
    return { names: ov.layers.map((l) => l.name), totals: ov.layers.find((l) => l.name === s.layer) ?? null };
  }

  diagnosis(s: State): Promise<DiagnosisResponse | null> {
    return this.api.diagnosis(primary(s), s.role, layerOf(s), s.step);
  }

  /** The layer's totals of every role it holds at the step (one /overview per role, shared with the other views). */
  async chain(s: State): Promise<ChainInput> {
    const run = primary(s);
    const layer = layerOf(s);
    const layers = runInfo(s, run)?.layers ?? [];
    const roles = layers.find((l) => l.name === layer)?.roles ?? {};
    const names = Object.keys(roles);
    const found = await Promise.all(
      names.map((role) =>
        this.api
          .overview(run, role, s.step)
          .then((ov) => ov.layers.find((l) => l.name === layer))
          .catch(() => undefined),
      ),
    );
    const totals: Partial<Record<string, LayerTotals>> = {};
    names.forEach((role, i) => {
      if (found[i]) totals[role] = found[i];
    });
    const producer = roles.input_features?.producer ?? null;
    const zeroedBy = roles.input_features?.zeroed_by ?? [];
    return { layer, totals, activation: roles.activation?.activation ?? null, producer, producerRecorded: producer ? layers.some((l) => l.name === producer) : undefined, zeroedBy };
  }

  /** The layer's per-unit pairs: its latest record with unit detail at or before the step; null if none. */
  units(s: State): Promise<UnitsResponse | null> {
    return this.api.units(primary(s), s.role, layerOf(s), s.step);
  }

  /** The layer's units x steps, with its per-unit pairs when they load (they order the rows), else null. */
  async unitSteps(s: State): Promise<{ uh: UnitHeatmap; u: UnitsResponse | null }> {
    const [uh, u] = await Promise.all([this.api.unitHeatmap(primary(s), s.role, layerOf(s)), this.units(s).catch(() => null)]);
    return { uh, u };
  }

  timeline(s: State): Promise<TimelineResponse> {
    return this.api.timeline(primary(s), s.role, layerOf(s));
  }

  /** The runs the compare view shows: the first MAX_COMPARED selected. */
  compared(s: State): string[] {
    return s.selected.slice(0, MAX_COMPARED);
  }

  compareOverview(s: State): Promise<CompareOverviewResponse> {
    return this.api.compareOverview(this.compared(s), s.role, s.step);
  }

  compareHeatmap(s: State): Promise<CompareHeatmapResponse> {
    return this.api.compareHeatmap(this.compared(s), s.role);
  }
}
