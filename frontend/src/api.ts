/**
 * Data access: the plugin's HTTP routes (tb_matmul_explainer/http_api.md), fetched with RELATIVE urls
 * (the iframe's <base> is /data/plugin/matmul_explainer/). Answers are cached per URL until `clear()`
 * (the reload button), and concurrent requests for one URL share one fetch.
 */
import type {
  CompareHeatmapResponse,
  CompareOverviewResponse,
  Diagnosis,
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

/** Accepts the likely shapes of the diagnosis route's answer and returns its sentences, or null. */
export function normaliseDiagnosis(body: unknown): Diagnosis | null {
  if (typeof body === 'string') return body.trim() ? { text: body.trim(), details: [] } : null;
  if (!body || typeof body !== 'object') return null;
  const o = body as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === 'string' && v.trim() ? v.trim() : null);
  const text = str(o.text) ?? str(o.diagnosis) ?? str(o.summary) ?? str(o.message) ?? str(o.headline);
  const list = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && !!x.trim()) : []);
  let details = [...list(o.sentences), ...list(o.lines), ...list(o.details)];
  if (o.causes && typeof o.causes === 'object' && !Array.isArray(o.causes)) {
    // {cause name: share of the near-zero cells' products}, largest first.
    const entries = Object.entries(o.causes as Record<string, unknown>).filter((e): e is [string, number] => typeof e[1] === 'number');
    entries.sort((a, b) => b[1] - a[1]);
    for (const [name, share] of entries) details.push(`${name.replace(/_/g, ' ')}: ${(share * 100).toFixed(0)}% of the near-zero results’ products`);
  }
  if (Array.isArray(o.alerts)) for (const a of normaliseAlerts(o.alerts)) details.push(`alert: ${a.message}`);
  if (Array.isArray(o.causes)) {
    for (const c of o.causes) {
      if (typeof c === 'string') details.push(c);
      else if (c && typeof c === 'object') {
        const cc = c as Record<string, unknown>;
        const t = str(cc.text) ?? str(cc.description) ?? str(cc.cause) ?? str(cc.name);
        if (t) details.push(typeof cc.share === 'number' ? `${t} (${(cc.share * 100).toFixed(0)}%)` : t);
      }
    }
  }
  if (o.diagnosis && typeof o.diagnosis === 'object') {
    const inner = normaliseDiagnosis(o.diagnosis);
    if (inner) return { text: text ?? inner.text, details: [...details, ...inner.details] };
  }
  if (!text && !details.length) return null;
  if (!text) {
    const [first, ...rest] = details;
    return { text: first, details: rest };
  }
  details = details.filter((d) => d !== text);
  return { text, details };
}

/** One ranked alert of a run, as the (optional) `/alerts` route or a diagnosis may carry it. */
export interface Alert {
  kind: string;
  layer: string;
  role: string;
  firstStep: number | null;
  severity: number;
  message: string;
}

/** Accepts a list of alerts (or {alerts: [...]}) and returns the readable ones, most severe first. */
export function normaliseAlerts(body: unknown): Alert[] {
  const list = Array.isArray(body) ? body : body && typeof body === 'object' && Array.isArray((body as { alerts?: unknown }).alerts) ? (body as { alerts: unknown[] }).alerts : [];
  const out: Alert[] = [];
  for (const a of list) {
    if (typeof a === 'string') {
      if (a.trim()) out.push({ kind: '', layer: '', role: '', firstStep: null, severity: 0, message: a.trim() });
      continue;
    }
    if (!a || typeof a !== 'object') continue;
    const o = a as Record<string, unknown>;
    const message = [o.message, o.text, o.description].find((x): x is string => typeof x === 'string' && !!x.trim());
    if (!message) continue;
    const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    out.push({
      kind: typeof o.kind === 'string' ? o.kind : '',
      layer: typeof o.layer === 'string' ? o.layer : '',
      role: typeof o.role === 'string' ? o.role : '',
      firstStep: num(o.first_step),
      severity: num(o.severity) ?? 0,
      message: message.trim(),
    });
  }
  return out.sort((x, y) => y.severity - x.severity);
}

export interface Api {
  runs(): Promise<RunsResponse>;
  overview(run: string, role: Role, step?: number | null): Promise<OverviewResponse>;
  timeline(run: string, role: Role, layer: string): Promise<TimelineResponse>;
  heatmap(run: string, role: Role): Promise<HeatmapResponse>;
  units(run: string, role: Role, layer: string, step?: number | null): Promise<UnitsResponse>;
  unitHeatmap(run: string, role: Role, layer: string): Promise<UnitHeatmap>;
  compareOverview(runs: string[], role: Role, step?: number | null): Promise<CompareOverviewResponse>;
  compareHeatmap(runs: string[], role: Role): Promise<CompareHeatmapResponse>;
  /** The diagnosis for a layer, or null where the backend has none (404: route or record absent). */
  diagnosis(run: string, role: Role, layer: string, step?: number | null): Promise<Diagnosis | null>;
  /** The run's ranked alerts, or null where the backend has no such route (404). */
  alerts(run: string): Promise<Alert[] | null>;
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

  const json = <T>(path: string, params?: Params): Promise<T> => {
    const url = buildUrl(path, params);
    return cached(url, async () => {
      const res = await fetchFn(url, { credentials: 'same-origin' });
      if (!res.ok) throw await errorOf(res, url);
      return (await res.json()) as T;
    });
  };

  return {
    runs: () => json<RunsResponse>('runs'),
    overview: (run, role, step) => json('overview', { run, role, step }),
    timeline: (run, role, layer) => json('timeline', { run, role, layer }),
    heatmap: (run, role) => json('heatmap', { run, role }),
    units: (run, role, layer, step) => json('units', { run, role, layer, step }),
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
    diagnosis: (run, role, layer, step) => {
      const url = buildUrl('diagnosis', { run, role, layer, step });
      return cached(url, async () => {
        const res = await fetchFn(url, { credentials: 'same-origin' });
        if (res.status === 404) return null;
        if (!res.ok) throw await errorOf(res, url);
        const type = res.headers.get('Content-Type') ?? '';
        return normaliseDiagnosis(type.includes('json') ? await res.json() : await res.text());
      });
    },
    alerts: (run) => {
      const url = buildUrl('alerts', { run });
      return cached(url, async () => {
        const res = await fetchFn(url, { credentials: 'same-origin' });
        if (res.status === 404) return null;
        if (!res.ok) throw await errorOf(res, url);
        return normaliseAlerts(await res.json());
      });
    },
    clear: () => cache.clear(),
  };
}
