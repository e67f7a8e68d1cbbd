/** Response shapes of the plugin's HTTP routes (tb_matmul_explainer/http_api.md, contract version 2). */

/**
 * Pair order of every array of nine: first letter = first operand, second letter = second operand.
 * Must equal `TERMS` in tb_matmul_explainer/metadata.py (test/backend-contract.test.ts checks it).
 */
export const TERMS = ['PP', 'PZ', 'PN', 'ZP', 'ZZ', 'ZN', 'NP', 'NZ', 'NN'] as const;
export type Term = (typeof TERMS)[number];

/** The recorded roles in their canonical order: must equal `ROLES` in tb_matmul_explainer/metadata.py (checked by test). */
export const ROLES = [
  'forward',
  'kernel_gradient',
  'input_gradient',
  'activation',
  'activation_gradient',
  'input_features',
] as const;
export type Role = string;

export interface RoleInfo {
  last_step: number;
  units?: number;
  confidence: number;
  operands: [string, string] | string[];
  thresholds?: (number | null)[];
  tag?: string;
  first_step?: number;
  records?: number;
  /** Keras name of the activation function (activation roles; null/absent otherwise). */
  activation?: string | null;
  /** input_features: the layer that produced the input (null: the model is not a graph Keras can resolve). */
  producer?: string | null;
  /** input_features: "input" (the model's input), "activation" or "layer". */
  producer_kind?: string | null;
  /** input_features: layers between the producer and this one that set values to exactly zero (Dropout, ...). */
  zeroed_by?: string[];
  loss_reads_logits?: boolean | null;
}

/** JSON has no NaN/inf: the backend sends null for a non-finite sum and for a fraction with no cells. */
export type Num = number | null;

export interface LayerInfo {
  name: string;
  index: number;
  op: string;
  units: number;
  roles: Record<string, RoleInfo>;
}

export interface Unreadable {
  tag: string;
  reason: string;
}

/**
 * A layer the writer could not record, and why (the Keras callback writes one text summary
 * `matmul_explainer/not_recorded/<layer>` per such layer; /runs reads them). Both are plain text.
 */
export interface NotRecorded {
  layer: string;
  reason: string;
}

export interface RunInfo {
  run: string;
  roles: Role[];
  layers: LayerInfo[];
  unreadable?: Unreadable[];
  /** Absent from a backend older than the field: read it with `notRecordedOf` (absent = none). */
  notRecorded?: NotRecorded[];
  /** Layers recorded only in part (called twice in a step, no gradient reached them): `notRecordedOf(r, 'partlyRecorded')`. */
  partlyRecorded?: NotRecorded[];
}

export interface RunsResponse {
  version: number;
  runs: RunInfo[];
}

/** One layer's totals at one step (summed over its units). */
export interface LayerTotals {
  name: string;
  index: number;
  op: string;
  units: number;
  step: number;
  counts: number[];
  sums: Num[];
  near_zero_counts: number[];
  near_zero_sums: Num[];
  cells: number;
  near_zero_cells: number;
  near_zero_fraction: Num;
  dead_units: number;
  thresholds: (number | null)[];
  nonfinite: number[];
  /** The layer's inactive share (its activation record's near-zero fraction); null/absent without one. */
  inactive_fraction?: Num;
}

export interface OverviewResponse {
  run: string;
  role: Role;
  step: number;
  layers: LayerTotals[];
}

/** Nine-pair totals per row (a step of `/timeline`, a unit of `/units`): counts and sums [row][pair]. */
export interface PairRows {
  counts: number[][];
  sums: Num[][];
  near_zero_counts: number[][];
  near_zero_sums: Num[][];
  cells: number[];
  near_zero_cells: number[];
  near_zero_fraction: Num[];
}

export interface TimelineResponse extends PairRows {
  run: string;
  role: Role;
  layer: string;
  steps: number[];
}

export interface HeatmapResponse {
  run: string;
  role: Role;
  layers: string[];
  steps: number[];
  values: (number | null)[][];
}

export interface UnitsResponse extends PairRows {
  run: string;
  role: Role;
  layer: string;
  step: number;
  units: number;
  group_size: number;
}

/** `/unit_heatmap` decoded: rows x steps, row-major, NaN where a value is missing. */
export interface UnitHeatmap {
  steps: number[];
  rows: number;
  groupSize: number;
  values: Float32Array;
}

export type CompareOverviewResult = Omit<OverviewResponse, 'layers'> & { layers: (LayerTotals | null)[] };
export type CompareHeatmapResult = Omit<HeatmapResponse, 'values'> & { values: ((number | null)[] | null)[] };

/** A result is null where the run has no records for the role or step (everything missing). */
export interface CompareOverviewResponse {
  view: 'overview';
  role: Role;
  runs: string[];
  layers: string[];
  results: (CompareOverviewResult | null)[];
}

export interface CompareHeatmapResponse {
  view: 'heatmap';
  role: Role;
  runs: string[];
  layers: string[];
  results: (CompareHeatmapResult | null)[];
}

/** Kinds of alert the backend raises (rules in explain.py); an unknown kind is shown as it is. */
export const ALERT_KINDS = ['dead_units', 'cancellation', 'excess_near_zero', 'vanishing_gradient', 'collapsed_weights', 'non_finite', 'no_gradient', 'dying_during_training', 'unscaled_input'] as const;

/** One alert: `/diagnosis` lists a layer's, `/alerts` a run's (ranked worst first). */
export interface Alert {
  kind: string;
  layer: string;
  role: Role;
  /** First recorded step from which the alert held continuously. */
  first_step: number;
  /** In [0, 1]. */
  severity: number;
  message: string;
  /** The recorded layer whose input showed the alert, where `layer` (its origin) has no records of its own. */
  seen_in?: string | null;
  /** Where the tab shows the alert: the records of `layer`, else of `seen_in` (null: neither is in the run). */
  open?: AlertTarget | null;
}

export interface AlertTarget {
  layer: string;
  role: Role;
  tag: string;
}

/** `/diagnosis?run&role&layer[&step]`: one layer's diagnosis at its latest record at or before `step`. */
export interface DiagnosisResponse {
  run: string;
  role: Role;
  layer: string;
  /** The record's step. */
  step: number;
  text: string;
  /** Cause -> share of the near-zero cells' products it accounts for (null: not finite). */
  causes: Record<string, Num>;
  near_zero_fraction: Num;
  /** Stored rows (see /units) that are dead at this step. */
  dead_rows: number[];
  /** Its near-zero results come from near-zero operands made elsewhere (absent from older backends). */
  starved?: boolean;
  alerts: Alert[];
}

/** One layer and role's diagnosis line in `/alerts`. */
export interface LayerDiagnosis {
  layer: string;
  role: Role;
  step: number;
  text: string;
}

/** `/alerts?run[&step]`: every layer and role of a run diagnosed at `step` (null: each layer's latest record). */
export interface AlertsResponse {
  run: string;
  step: number | null;
  /** Worst first. */
  alerts: Alert[];
  /** Model order. */
  diagnoses: LayerDiagnosis[];
}
