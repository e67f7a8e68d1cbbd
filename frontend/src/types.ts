/** Response shapes of the plugin's HTTP routes (tb_matmul_explainer/http_api.md, contract version 1). */

/** Pair order of every array of nine: first letter = first operand, second letter = second operand. */
export const TERMS = ['PP', 'PZ', 'PN', 'ZP', 'ZZ', 'ZN', 'NP', 'NZ', 'NN'] as const;
export type Term = (typeof TERMS)[number];

export const ROLES = ['forward', 'kernel_gradient', 'input_gradient'] as const;
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

export interface RunInfo {
  run: string;
  roles: Role[];
  layers: LayerInfo[];
  unreadable?: Unreadable[];
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
}

export interface OverviewResponse {
  run: string;
  role: Role;
  step: number;
  layers: LayerTotals[];
}

export interface TimelineResponse {
  run: string;
  role: Role;
  layer: string;
  steps: number[];
  counts: number[][];
  sums: Num[][];
  near_zero_counts: number[][];
  near_zero_sums: Num[][];
  cells: number[];
  near_zero_cells: number[];
  near_zero_fraction: Num[];
}

export interface HeatmapResponse {
  run: string;
  role: Role;
  layers: string[];
  steps: number[];
  values: (number | null)[][];
}

export interface UnitsResponse {
  run: string;
  role: Role;
  layer: string;
  step: number;
  units: number;
  group_size: number;
  counts: number[][];
  sums: Num[][];
  near_zero_counts: number[][];
  near_zero_sums: Num[][];
  cells: number[];
  near_zero_cells: number[];
  near_zero_fraction: Num[];
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

/** Normalised answer of the (optional) `/diagnosis` route. */
export interface Diagnosis {
  text: string;
  details: string[];
}
