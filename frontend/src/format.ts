/** Number formatting. Tooltips show exact values: the shortest text that reads back as the same double. */

/** The exact value as the backend sent it (shortest round-trip form); '–' for missing. */
export function exact(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (Object.is(v, -0)) return '0';
  return String(v);
}

/** A share in [0, 1] as a percentage with up to `digits` decimals. */
export function pct(v: number | null | undefined, digits = 1): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  const s = (v * 100).toFixed(digits);
  // No "-0%" for tiny negative differences.
  return `${Number(s) === 0 ? (0).toFixed(digits) : s}%`;
}

/** A signed difference of shares in percentage points, e.g. "+12", "-3", "0". */
export function signedPoints(v: number): string {
  const r = Math.round(v * 100);
  return r === 0 ? '0' : `${r > 0 ? '+' : ''}${r}`;
}

/** A compact human-readable number for cell text and axis ticks. */
export function compact(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (!Number.isFinite(v)) return v > 0 ? '+inf' : '-inf';
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1).replace('e+', 'e');
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toPrecision(2);
}

/**
 * A record header's non-finite counts [first operand, second operand, result] as text naming only the nonzero
 * ones, e.g. "input 3, result 12"; '' when all are zero.
 */
export function nonFiniteText(counts: readonly number[], operands: readonly string[]): string {
  const names = [operands[0] ?? 'first operand', operands[1] ?? 'second operand', 'result'];
  return counts
    .slice(0, 3)
    .map((c, i) => (c ? `${names[i]} ${exact(c)}` : ''))
    .filter(Boolean)
    .join(', ');
}

/** Integer counts with thousands separators (for prose, not for the exact tooltip value). */
export function int(v: number): string {
  return Math.round(v).toLocaleString('en-US');
}

/** Shortest decimal text that reads back as the same float32 (for the f32 unit heatmap). */
export function exactF32(v: number): string {
  if (Number.isNaN(v)) return '–';
  for (let p = 1; p <= 9; p++) {
    const s = Number(v.toPrecision(p));
    if (Math.fround(s) === v) return String(s);
  }
  return String(v);
}
