/** API answers shaped exactly like tb_matmul_explainer/http_api.md, for unit tests. */
import type {
  Alert,
  AlertsResponse,
  CompareHeatmapResponse,
  CompareOverviewResponse,
  DiagnosisResponse,
  HeatmapResponse,
  LayerTotals,
  OverviewResponse,
  RunsResponse,
  UnitsResponse,
} from '../src/types';

export function layer(name: string, index: number, over: Partial<LayerTotals> = {}): LayerTotals {
  return {
    name,
    index,
    op: 'dense',
    units: 4,
    step: 900,
    counts: [40, 10, 30, 10, 5, 5, 20, 5, 35],
    sums: [8, 0.1, -6, 0.2, 0, -0.1, -4, -0.2, 7],
    near_zero_counts: [4, 2, 3, 6, 5, 1, 2, 1, 4],
    near_zero_sums: [0.5, 0.01, -0.4, 0.02, 0, -0.01, -0.3, -0.02, 0.2],
    cells: 16,
    near_zero_cells: 2,
    near_zero_fraction: 0.125,
    dead_units: 0,
    thresholds: [0.01, 0.02, 0.03],
    nonfinite: [0, 0, 0],
    ...over,
  };
}

export const runs: RunsResponse = {
  version: 1,
  runs: [
    {
      run: 'mlp',
      roles: ['forward', 'kernel_gradient'],
      layers: [
        { name: 'dense', index: 0, op: 'dense', units: 4, roles: { forward: { first_step: 0, last_step: 900, records: 10, confidence: 0.95, operands: ['input', 'kernel'] } } },
        { name: 'dense_1', index: 1, op: 'dense', units: 4, roles: { forward: { first_step: 0, last_step: 900, records: 10, confidence: 0.95, operands: ['input', 'kernel'] } } },
      ],
      unreadable: [],
    },
    {
      run: '<img src=x onerror=alert(1)>',
      roles: ['forward'],
      layers: [
        { name: '<b>evil</b>', index: 0, op: 'dense', units: 4, roles: { forward: { first_step: 0, last_step: 900, records: 10, confidence: 0.95, operands: ['input', 'kernel'] } } },
      ],
    },
  ],
};

export function overview(run = 'mlp'): OverviewResponse {
  return { run, role: 'forward', step: 900, layers: [layer('dense', 0), layer('dense_1', 1, { near_zero_fraction: 0.5, near_zero_cells: 8 })] };
}

export function heatmap(run = 'mlp'): HeatmapResponse {
  return { run, role: 'forward', layers: ['dense', 'dense_1'], steps: [0, 100, 900], values: [[0.1, 0.2, 0.125], [null, 0.4, 0.5]] };
}

export function units(): UnitsResponse {
  const l = layer('dense', 0);
  const rows = 4;
  const rep = <T>(x: T) => Array.from({ length: rows }, () => x);
  return {
    run: 'mlp',
    role: 'forward',
    layer: 'dense',
    step: 900,
    units: 4,
    group_size: 1,
    counts: rep(l.counts),
    sums: rep(l.sums),
    near_zero_counts: rep(l.near_zero_counts),
    near_zero_sums: rep(l.near_zero_sums),
    cells: rep(4),
    near_zero_cells: [0, 4, 1, 2],
    near_zero_fraction: [0, 1, 0.25, 0.5],
  };
}

export function compareOverview(): CompareOverviewResponse {
  return {
    view: 'overview',
    role: 'forward',
    runs: ['a', 'b'],
    layers: ['dense', 'extra', 'dense_1'],
    results: [
      { run: 'a', role: 'forward', step: 900, layers: [layer('dense', 0), layer('extra', 1), layer('dense_1', 2)] },
      { run: 'b', role: 'forward', step: 800, layers: [layer('dense', 0, { near_zero_fraction: 0.5 }), null, layer('dense_1', 1)] },
    ],
  };
}

export function compareHeatmap(): CompareHeatmapResponse {
  return {
    view: 'heatmap',
    role: 'forward',
    runs: ['a', 'b'],
    layers: ['dense', 'extra'],
    results: [
      { run: 'a', role: 'forward', layers: ['dense', 'extra'], steps: [0, 100], values: [[0.1, 0.2], [0.3, 0.4]] },
      { run: 'b', role: 'forward', layers: ['dense', 'extra'], steps: [0, 50, 100], values: [[0.05, 0.5, 0.1], null] },
    ],
  };
}

export function alert(over: Partial<Alert> = {}): Alert {
  return {
    kind: 'dead_units',
    layer: 'dense_1',
    role: 'forward',
    first_step: 100,
    severity: 0.5,
    message: '2 of 4 units are dead (near zero in every cell) since step 100.',
    ...over,
  };
}

export function diagnosis(layerName = 'dense_1', over: Partial<DiagnosisResponse> = {}): DiagnosisResponse {
  return {
    run: 'mlp',
    role: 'forward',
    layer: layerName,
    step: 900,
    text: `50% of ${layerName}'s results are near zero, mostly because of near-zero input (80% of their products).`,
    causes: { 'input +/- cancelling': 0.1, 'near-zero input': 0.8 },
    near_zero_fraction: 0.5,
    dead_rows: [1, 3],
    alerts: [alert({ layer: layerName })],
    ...over,
  };
}

export function alerts(run = 'mlp', step: number | null = null): AlertsResponse {
  return {
    run,
    step,
    alerts: [
      alert({ kind: 'excess_near_zero', layer: 'dense_1', severity: 0.45, first_step: 100, message: '50% of results are near zero where about 5% is normal, since step 100.' }),
      alert({ layer: 'dense', severity: 0.25, first_step: 0, message: '1 of 4 units are dead (near zero in every cell) since step 0.' }),
    ],
    diagnoses: [
      { layer: 'dense', role: 'forward', step: 900, text: 'Nothing wrong: 12% of results are near zero.' },
      { layer: 'dense', role: 'kernel_gradient', step: 900, text: 'kernel gradient line' },
      { layer: 'dense_1', role: 'forward', step: 900, text: '50% of results are near zero.' },
    ],
  };
}
