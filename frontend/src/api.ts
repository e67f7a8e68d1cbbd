/**
 * Data access: the plugin's HTTP routes (tb_matmul_explainer/http_api.md), fetched with RELATIVE urls
 * (the iframe's <base> is /data/plugin/matmul_explainer/). Answers are cached per URL until `clear()`
 * (the reload button), and concurrent requests for one URL share one fetch.
 */
import type {
  Alert,
  AlertTarget,
  AlertsResponse,
  CompareHeatmapResponse,
  CompareOverviewResponse,
  DiagnosisResponse,
  LayerDiagnosis,
  HeatmapResponse,
  OverviewResponse,
  Role,
  RunsResponse,
  TimelineResponse,
  UnitHeatmap,
  UnitsResponse,
} from './types';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly url: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

type FetchFn = (input: string, init?: RequestInit) => Promise<Response>;
type Params = Record<string, string | number | null | undefined | (string | number)[]>;

/** `path?query` with repeated keys for arrays and absent keys for null/undefined. */
export function buildUrl(path: string, params: Params = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) q.append(k, String(x));
    else q.append(k, String(v));
  }
  const s = q.toString();
  return s ? `./${path}?${s}` : `./${path}`;
}

/** Decodes the `format=f32` body of /unit_heatmap: little-endian float32, row-major [rows, steps]. */
export function parseF32(buf: ArrayBuffer, headers: { get(name: string): string | null }): UnitHeatmap {
  const rows = Number(headers.get('X-Rows'));
  const stepsHeader = headers.get('X-Steps') ?? '';
  const steps = stepsHeader.trim() === '' ? [] : stepsHeader.split(',').map((s) => Number(s.trim()));
  const groupSize = Number(headers.get('X-Group-Size') ?? '1') || 1;
  if (!Number.isInteger(rows) || rows < 0 || steps.some((s) => !Number.isFinite(s))) {
    throw new Error(`malformed /unit_heatmap headers: X-Rows=${headers.get('X-Rows')}, X-Steps=${stepsHeader}`);
  }
  const n = rows * steps.length;
  if (buf.byteLength !== n * 4) {
    throw new Error(`/unit_heatmap body has ${buf.byteLength} bytes, expected ${n * 4} (${rows} x ${steps.length} float32)`);
  }
  let values: Float32Array;
  const littleEndianHost = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
  if (littleEndianHost) values = new Float32Array(buf, 0, n);
  else {
    const dv = new DataView(buf);
    values = new Float32Array(n);
    for (let i = 0; i < n; i++) values[i] = dv.getFloat32(i * 4, true);
  }
  return { steps, rows, groupSize, values };
}

/** A route answered JSON that is not the documented shape. */
export class ShapeError extends Error {
  constructor(route: string, path: string, expected: string, got: unknown) {
    const seen = got === null ? 'null' : Array.isArray(got) ? 'an array' : typeof got === 'string' ? `"${got.slice(0, 40)}"` : typeof got;
    super(`malformed ${route} answer: ${path} should be ${expected}, got ${seen}`);
    this.name = 'ShapeError';
  }
}

/** Readers of one route's JSON that throw a ShapeError naming the route and field that do not fit. */
function reader(route: string) {
  const fail = (path: string, expected: string, got: unknown): never => {
    throw new ShapeError(route, path, expected, got);
  };
  const obj = (v: unknown, path: string): Record<string, unknown> =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : fail(path, 'an object', v);
  const str = (v: unknown, path: string): string => (typeof v === 'string' ? v : fail(path, 'a string', v));
  const int = (v: unknown, path: string): number => (Number.isInteger(v) ? (v as number) : fail(path, 'an integer', v));
  const num = (v: unknown, path: string): number => (typeof v === 'number' && Number.isFinite(v) ? v : fail(path, 'a number', v));
  const numOrNull = (v: unknown, path: string): number | null => (v === null ? null : num(v, path));
  const list = <T>(v: unknown, path: string, item: (x: unknown, path: string) => T): T[] =>
    Array.isArray(v) ? v.map((x, i) => item(x, `${path}[${i}]`)) : fail(path, 'an array', v);
  const alert = (v: unknown, path: string): Alert => {
    const o = obj(v, path);
    return {
      kind: str(o.kind, `${path}.kind`),
      layer: str(o.layer, `${path}.layer`),
      role: str(o.role, `${path}.role`),
      first_step: int(o.first_step, `${path}.first_step`),
      severity: num(o.severity, `${path}.severity`),
      message: str(o.message, `${path}.message`),
      // Version-2 fields, kept only where the backend sends them (an older backend: absent).
      ...(o.seen_in === undefined ? {} : { seen_in: o.seen_in === null ? null : str(o.seen_in, `${path}.seen_in`) }),
      ...(o.open === undefined ? {} : { open: o.open === null ? null : target(o.open, `${path}.open`) }),
    };
  };
  const target = (v: unknown, path: string): AlertTarget => {
    const o = obj(v, path);
    return { layer: str(o.layer, `${path}.layer`), role: str(o.role, `${path}.role`), tag: str(o.tag, `${path}.tag`) };
  };
  return { obj, str, int, numOrNull, list, alert };
}

/** The `/diagnosis` answer (http_api.md), checked field by field. */
export function parseDiagnosis(body: unknown): DiagnosisResponse {
  const r = reader('/diagnosis');
  const o = r.obj(body, 'the answer');
  const shares = (v: unknown, path: string): Record<string, number | null> => {
    const out: Record<string, number | null> = {};
    for (const [name, share] of Object.entries(r.obj(v, path))) out[name] = r.numOrNull(share, `${path}[${JSON.stringify(name)}]`);
    return out;
  };
  return {
    run: r.str(o.run, 'run'),
    role: r.str(o.role, 'role'),
    layer: r.str(o.layer, 'layer'),
    step: r.int(o.step, 'step'),
    text: r.str(o.text, 'text'),
    causes: shares(o.causes, 'causes'),
    near_zero_fraction: r.numOrNull(o.near_zero_fraction, 'near_zero_fraction'),
    dead_rows: r.list(o.dead_rows, 'dead_rows', r.int),
    ...(typeof o.starved === 'boolean' ? { starved: o.starved } : {}),
    alerts: r.list(o.alerts, 'alerts', r.alert),
  };
}

/** The `/alerts` answer (http_api.md), checked field by field; the alerts keep the backend's ranking. */
export function parseAlerts(body: unknown): AlertsResponse {
  const r = reader('/alerts');
  const o = r.obj(body, 'the answer');
  return {
    run: r.str(o.run, 'run'),
    step: o.step === null ? null : r.int(o.step, 'step'),
    alerts: r.list(o.alerts, 'alerts', r.alert),
    diagnoses: r.list(o.diagnoses, 'diagnoses', (v, path): LayerDiagnosis => {
      const d = r.obj(v, path);
      return { layer: r.str(d.layer, `${path}.layer`), role: r.str(d.role, `${path}.role`), step: r.int(d.step, `${path}.step`), text: r.str(d.text, `${path}.text`) };
    }),
  };
}

/** Causes of a diagnosis, largest share first (a null share last). */
export function rankedCauses(d: DiagnosisResponse): { name: string; share: number | null }[] {
  return Object.entries(d.causes)
    .map(([name, share]) => ({ name, share }))
    .sort((a, b) => (b.share ?? -1) - (a.share ?? -1));
}

export interface Api {
  runs(): Promise<RunsResponse>;
  overview(run: string, role: Role, step?: number | null): Promise<OverviewResponse>;
  timeline(run: string, role: Role, layer: string): Promise<TimelineResponse>;
  heatmap(run: string, role: Role): Promise<HeatmapResponse>;
  /**
   * A layer's per-unit pairs from its latest record with unit detail at or before `step` (its `step` says which),
   * or null where there is none (404).
   */
  units(run: string, role: Role, layer: string, step?: number | null): Promise<UnitsResponse | null>;
  unitHeatmap(run: string, role: Role, layer: string): Promise<UnitHeatmap>;
  compareOverview(runs: string[], role: Role, step?: number | null): Promise<CompareOverviewResponse>;
  compareHeatmap(runs: string[], role: Role): Promise<CompareHeatmapResponse>;
  /** A layer's diagnosis, or null where the layer has no record at or before `step` (404). */
  diagnosis(run: string, role: Role, layer: string, step?: number | null): Promise<DiagnosisResponse | null>;
  /** The run's alerts, ranked worst first, and every layer and role's diagnosis line at `step`. */
  alerts(run: string, step?: number | null): Promise<AlertsResponse>;
  clear(): void;
}

async function errorOf(res: Response, url: string): Promise<ApiError> {
  let text = '';
  try {
    text = (await res.text()).trim();
  } catch {
    /* body unreadable */
  }
  if (text.length > 400) text = `${text.slice(0, 400)}…`;
  return new ApiError(res.status, url, `${res.status} ${res.statusText || ''} from ${url}${text ? `: ${text}` : ''}`.replace(/ {2,}/g, ' '));
}

export function createApi(fetchFn: FetchFn = (u, i) => fetch(u, i)): Api {
  const cache = new Map<string, Promise<unknown>>();

  function cached<T>(url: string, load: () => Promise<T>): Promise<T> {
    const hit = cache.get(url);
    if (hit) return hit as Promise<T>;
    const p = load();
    cache.set(url, p);
    p.catch(() => cache.delete(url));
    return p;
  }

  /** The route's JSON, cached; with `orNull`, null for a 404 (nothing at or before the step). */
  function json<T>(path: string, params?: Params): Promise<T>;
  function json<T>(path: string, params: Params, orNull: true): Promise<T | null>;
  function json<T>(path: string, params?: Params, orNull = false): Promise<T | null> {
    const url = buildUrl(path, params);
    return cached(url, async () => {
      const res = await fetchFn(url, { credentials: 'same-origin' });
      if (orNull && res.status === 404) return null;
      if (!res.ok) throw await errorOf(res, url);
      return (await res.json()) as T;
    });
  }

  return {
    runs: () => json<RunsResponse>('runs'),
    overview: (run, role, step) => json('overview', { run, role, step }),
    timeline: (run, role, layer) => json('timeline', { run, role, layer }),
    heatmap: (run, role) => json('heatmap', { run, role }),
    units: (run, role, layer, step) => json<UnitsResponse>('units', { run, role, layer, step }, true),
    unitHeatmap: (run, role, layer) => {
      const url = buildUrl('unit_heatmap', { run, role, layer, format: 'f32' });
      return cached(url, async () => {
        const res = await fetchFn(url, { credentials: 'same-origin' });
        if (!res.ok) throw await errorOf(res, url);
        return parseF32(await res.arrayBuffer(), res.headers);
      });
    },
    compareOverview: (runs, role, step) => json('compare', { view: 'overview', run: runs, role, step }),
    compareHeatmap: (runs, role) => json('compare', { view: 'heatmap', run: runs, role }),
    diagnosis: (run, role, layer, step) => json<unknown>('diagnosis', { run, role, layer, step }, true).then((d) => (d === null ? null : parseDiagnosis(d))),
    alerts: (run, step) => json<unknown>('alerts', { run, step }).then(parseAlerts),
    clear: () => cache.clear(),
  };
}
