import { describe, expect, it, vi } from 'vitest';
import { ApiError, buildUrl, createApi, normaliseAlerts, normaliseDiagnosis, parseF32 } from '../src/api';
import { runs } from './fixtures';

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
    const err = await api.overview('nope', 'forward').catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(404);
    expect(err.message).toContain('unknown run: nope');
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

  it('diagnosis: 404 means none; JSON and text answers are normalised', async () => {
    const api404 = createApi(async () => respond('Not found', { status: 404 }));
    expect(await api404.diagnosis('r', 'forward', 'dense')).toBeNull();
    const apiJson = createApi(async () => respond({ text: 'Inputs are near zero.', causes: [{ text: 'near-zero input', share: 0.8 }] }));
    expect(await apiJson.diagnosis('r', 'forward', 'dense')).toEqual({ text: 'Inputs are near zero.', details: ['near-zero input (80%)'] });
    const apiText = createApi(async () => respond('All good.', { headers: { 'Content-Type': 'text/plain' } }));
    expect(await apiText.diagnosis('r', 'forward', 'dense')).toEqual({ text: 'All good.', details: [] });
    const api500 = createApi(async () => respond('boom', { status: 500 }));
    await expect(api500.diagnosis('r', 'forward', 'dense')).rejects.toBeInstanceOf(ApiError);
  });

  it('normaliseDiagnosis accepts several shapes', () => {
    expect(normaliseDiagnosis({ sentences: ['a', 'b'] })).toEqual({ text: 'a', details: ['b'] });
    expect(normaliseDiagnosis({ diagnosis: { summary: 'x' } })).toEqual({ text: 'x', details: [] });
    expect(normaliseDiagnosis({ diagnosis: 'y', details: ['y', 'z'] })).toEqual({ text: 'y', details: ['z'] });
    expect(normaliseDiagnosis({})).toBeNull();
    expect(normaliseDiagnosis(42)).toBeNull();
  });

  it('normaliseDiagnosis reads causes as {name: share}, largest first, and alerts', () => {
    const d = normaliseDiagnosis({
      text: 'Near-zero inputs explain it.',
      causes: { near_zero_first_operand: 0.7, cancellation: 0.2 },
      alerts: [{ message: 'dead units: 40%', severity: 0.4 }],
    });
    expect(d).toEqual({
      text: 'Near-zero inputs explain it.',
      details: ['near zero first operand: 70% of the near-zero results’ products', 'cancellation: 20% of the near-zero results’ products', 'alert: dead units: 40%'],
    });
  });

  it('alerts: worst first, 404 means no route', async () => {
    const alerts = normaliseAlerts({
      alerts: [
        { kind: 'dead_units', layer: 'dense_1', role: 'forward', first_step: 40, severity: 0.3, message: 'a' },
        { kind: 'non_finite', layer: 'logits', role: 'forward', first_step: 0, severity: 1, message: 'b' },
        { severity: 2 },
        'plain text alert',
      ],
    });
    expect(alerts.map((a) => a.message)).toEqual(['b', 'a', 'plain text alert']);
    expect(alerts[1]).toEqual({ kind: 'dead_units', layer: 'dense_1', role: 'forward', firstStep: 40, severity: 0.3, message: 'a' });
    expect(normaliseAlerts([])).toEqual([]);
    expect(await createApi(async () => new Response('Not found', { status: 404 })).alerts('r')).toBeNull();
  });
});
