import { describe, expect, it, vi } from 'vitest';
import { ApiError, ShapeError, buildUrl, createApi, parseAlerts, parseDiagnosis, parseF32, rankedCauses } from '../src/api';
import { alert, alerts, diagnosis, runs, units } from './fixtures';

function headers(h: Record<string, string>) {
  const m = new Map(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
  return { get: (k: string) => m.get(k.toLowerCase()) ?? null };
}

function respond(body: unknown, init: { status?: number; headers?: Record<string, string> } = {}): Response {
  const isBuf = body instanceof ArrayBuffer;
  return new Response(isBuf ? body : typeof body === 'string' ? body : JSON.stringify(body), {
    status: init.status ?? 200,
    headers: init.headers ?? { 'Content-Type': isBuf ? 'application/octet-stream' : 'application/json' },
  });
}

describe('urls', () => {
  it('are relative, skip absent parameters and repeat runs', () => {
    expect(buildUrl('runs')).toBe('./runs');
    expect(buildUrl('overview', { run: 'a b&c', role: 'forward', step: null })).toBe('./overview?run=a+b%26c&role=forward');
    expect(buildUrl('compare', { view: 'overview', run: ['a', 'b'], step: 0 })).toBe('./compare?view=overview&run=a&run=b&step=0');
  });
});

describe('f32 unit heatmap', () => {
  it('decodes little-endian float32 rows x steps with the headers', () => {
    const buf = new ArrayBuffer(4 * 6);
    const dv = new DataView(buf);
    [0, 0.5, 1, 0.25, NaN, 0.75].forEach((v, i) => dv.setFloat32(i * 4, v, true));
    const h = parseF32(buf, headers({ 'X-Rows': '2', 'X-Steps': '0,100,200', 'X-Group-Size': '4' }));
    expect(h.rows).toBe(2);
    expect(h.steps).toEqual([0, 100, 200]);
    expect(h.groupSize).toBe(4);
    expect(h.values[1]).toBe(0.5);
    expect(h.values[3]).toBe(0.25);
    expect(Number.isNaN(h.values[4])).toBe(true);
  });

  it('rejects a body of the wrong size', () => {
    expect(() => parseF32(new ArrayBuffer(8), headers({ 'X-Rows': '2', 'X-Steps': '0,1', 'X-Group-Size': '1' }))).toThrow(/expected 16/);
  });

  it('handles zero steps', () => {
    expect(parseF32(new ArrayBuffer(0), headers({ 'X-Rows': '3', 'X-Steps': '' })).steps).toEqual([]);
  });
});

describe('createApi', () => {
  it('caches answers per URL until clear()', async () => {
    const f = vi.fn(async (_url: string) => respond(runs));
    const api = createApi(f);
    await api.runs();
    await api.runs();
    expect(f).toHaveBeenCalledTimes(1);
    api.clear();
    await api.runs();
    expect(f).toHaveBeenCalledTimes(2);
    expect(f.mock.calls[0][0]).toBe('./runs');
  });

  it('turns error answers into ApiError with the backend message, and does not cache them', async () => {
    const f = vi.fn(async () => respond('unknown run: nope', { status: 404, headers: { 'Content-Type': 'text/plain' } }));
    const api = createApi(f);
    const err = await api.overview('nope', 'forward').then(() => null, (e: unknown) => e as ApiError);
    expect(err).toBeInstanceOf(ApiError);
    expect(err?.status).toBe(404);
    expect(err?.message).toContain('unknown run: nope');
    await api.overview('nope', 'forward').catch(() => null);
    expect(f).toHaveBeenCalledTimes(2);
  });

  it('fetches the unit heatmap as f32', async () => {
    const buf = new Float32Array([0.5, 1]).buffer;
    const f = vi.fn(async (_url: string) => respond(buf, { headers: { 'X-Rows': '1', 'X-Steps': '0,10', 'X-Group-Size': '1' } }));
    const h = await createApi(f).unitHeatmap('r', 'forward', 'dense');
    expect(f.mock.calls[0][0]).toBe('./unit_heatmap?run=r&role=forward&layer=dense&format=f32');
    expect(Array.from(h.values)).toEqual([0.5, 1]);
  });

  it('units: the latest record with unit detail (its step may be earlier), 404 = none at or before the step (cached)', async () => {
    const f = vi.fn(async (_url: string) => respond({ ...units(), step: 40 }));
    const u = await createApi(f).units('r', 'forward', 'dense', 47);
    expect(f.mock.calls[0][0]).toBe('./units?run=r&role=forward&layer=dense&step=47');
    expect(u?.step).toBe(40);
    const none = vi.fn(async () => respond("Not found: run 'r', layer 'dense', role 'forward' has no record with unit detail at or before step 3", { status: 404, headers: { 'Content-Type': 'text/plain' } }));
    const api404 = createApi(none);
    expect(await api404.units('r', 'forward', 'dense', 3)).toBeNull();
    expect(await api404.units('r', 'forward', 'dense', 3)).toBeNull();
    expect(none).toHaveBeenCalledTimes(1);
    const api500 = createApi(async () => respond('boom', { status: 500, headers: { 'Content-Type': 'text/plain' } }));
    await expect(api500.units('r', 'forward', 'dense', 3)).rejects.toBeInstanceOf(ApiError);
  });

  it('diagnosis: the documented shape, 404 = no record at or before the step, other errors thrown', async () => {
    const f = vi.fn(async (_url: string) => respond(diagnosis('dense')));
    const d = await createApi(f).diagnosis('r', 'forward', 'dense', 300);
    expect(f.mock.calls[0][0]).toBe('./diagnosis?run=r&role=forward&layer=dense&step=300');
    expect(d).toEqual(diagnosis('dense'));
    const api404 = createApi(async () => respond("Not found: run 'r', layer 'dense', role 'forward' has no record at or before step 0", { status: 404, headers: { 'Content-Type': 'text/plain' } }));
    expect(await api404.diagnosis('r', 'forward', 'dense', 0)).toBeNull();
    const api400 = createApi(async () => respond('bad step', { status: 400, headers: { 'Content-Type': 'text/plain' } }));
    await expect(api400.diagnosis('r', 'forward', 'dense', -1)).rejects.toBeInstanceOf(ApiError);
    const api500 = createApi(async () => respond('boom', { status: 500 }));
    await expect(api500.diagnosis('r', 'forward', 'dense')).rejects.toBeInstanceOf(ApiError);
  });

  it('parseDiagnosis keeps exactly the documented fields and rejects other shapes', () => {
    expect(parseDiagnosis({ ...diagnosis('dense'), extra: 1 })).toEqual(diagnosis('dense'));
    expect(parseDiagnosis(diagnosis('dense', { causes: { x: null }, near_zero_fraction: null, alerts: [], dead_rows: [] })).causes).toEqual({ x: null });
    // The shapes the old client guessed are errors now, naming the field.
    expect(() => parseDiagnosis('All good.')).toThrow(ShapeError);
    expect(() => parseDiagnosis({ sentences: ['a', 'b'] })).toThrow(/\/diagnosis answer: run should be a string/);
    expect(() => parseDiagnosis({ ...diagnosis(), causes: [{ text: 'near-zero input', share: 0.8 }] })).toThrow(/causes should be an object, got an array/);
    expect(() => parseDiagnosis({ ...diagnosis(), causes: { a: '80%' } })).toThrow(/causes\["a"\] should be a number/);
    expect(() => parseDiagnosis({ ...diagnosis(), step: 1.5 })).toThrow(/step should be an integer/);
    expect(() => parseDiagnosis({ ...diagnosis(), dead_rows: ['1'] })).toThrow(/dead_rows\[0\] should be an integer/);
    expect(() => parseDiagnosis({ ...diagnosis(), alerts: [{ ...alert(), severity: null }] })).toThrow(/alerts\[0\]\.severity should be a number, got null/);
    expect(() => parseDiagnosis({ ...diagnosis(), alerts: ['plain text alert'] })).toThrow(/alerts\[0\] should be an object/);
  });

  it('rankedCauses: largest share first, a null share last', () => {
    expect(rankedCauses(diagnosis('dense', { causes: { a: 0.1, b: null, c: 0.8 } }))).toEqual([
      { name: 'c', share: 0.8 },
      { name: 'a', share: 0.1 },
      { name: 'b', share: null },
    ]);
  });

  it('alerts: the documented shape in the backend\'s order (not re-ranked); a 404 is an error', async () => {
    const f = vi.fn(async (_url: string) => respond(alerts('r', 300)));
    const a = await createApi(f).alerts('r', 300);
    expect(f.mock.calls[0][0]).toBe('./alerts?run=r&step=300');
    expect(a).toEqual(alerts('r', 300));
    const reversed = { ...alerts(), alerts: [...alerts().alerts].reverse() };
    expect(parseAlerts(reversed).alerts.map((x) => x.severity)).toEqual([0.25, 0.45]);
    expect(parseAlerts({ ...alerts(), alerts: [] }).alerts).toEqual([]);
    expect(() => parseAlerts([alert()])).toThrow(/\/alerts answer: the answer should be an object, got an array/);
    expect(() => parseAlerts({ ...alerts(), step: 'latest' })).toThrow(/step should be an integer/);
    expect(() => parseAlerts({ ...alerts(), diagnoses: [{ layer: 'dense', role: 'forward', step: 1 }] })).toThrow(/diagnoses\[0\]\.text should be a string/);
    expect(() => parseAlerts({ ...alerts(), alerts: [{ ...alert(), first_step: null }] })).toThrow(/alerts\[0\]\.first_step should be an integer/);
    const err = await createApi(async () => respond("Not found: no Matmul Explainer data for run 'nope'", { status: 404 })).alerts('nope').then(() => null, (e: unknown) => e as ApiError);
    expect(err).toBeInstanceOf(ApiError);
    expect(err?.status).toBe(404);
  });
});
