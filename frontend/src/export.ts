/** Export: a heatmap's data as CSV (RFC 4180), its picture as PNG, and the browser download. */
import type { Grid } from './grid';

/** One CSV field. Numbers are written exactly; strings are quoted when needed and defused against
 *  spreadsheet formula injection (a leading = + - @ tab or CR gets a leading apostrophe). */
export function csvField(v: string | number | null | undefined): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return Number.isNaN(v) ? '' : String(v);
  let s = v;
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  if (/[",\r\n]/.test(s) || s !== s.trim()) s = `"${s.replace(/"/g, '""')}"`;
  return s;
}

export function csvLine(fields: (string | number | null | undefined)[]): string {
  return fields.map(csvField).join(',');
}

/** The grid as CSV: a header row (rowHeader, column labels), one line per row, missing = empty field.
 *  Rows with a note (e.g. "missing in run b") get it in a trailing `note` column. */
export function gridToCsv(g: Grid, rowHeader: string): string {
  const withNotes = !!g.rowNotes?.some((n) => n);
  const lines = [csvLine([rowHeader, ...g.colLabels, ...(withNotes ? ['note'] : [])])];
  for (let r = 0; r < g.rows; r++) {
    const fields: (string | number | null)[] = [g.rowLabels[r]];
    for (let c = 0; c < g.cols; c++) fields.push(g.values[r * g.cols + c]);
    if (withNotes) fields.push(g.rowNotes![r] ?? '');
    lines.push(csvLine(fields));
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** A file name safe on every OS, from parts that may hold any text. */
export function fileName(parts: string[], ext: string): string {
  const base = parts
    .filter((p) => p)
    .join('_')
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/_+/g, '_')
    .replace(/^[._]+|_+$/g, '')
    .slice(0, 120);
  return `${base || 'matmul_explainer'}.${ext}`;
}

export function downloadBlob(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.rel = 'noopener';
  a.style.display = 'none';
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function downloadCsv(g: Grid, rowHeader: string, name: string): void {
  downloadBlob(new Blob([gridToCsv(g, rowHeader)], { type: 'text/csv;charset=utf-8' }), name);
}

export function downloadCanvas(canvas: HTMLCanvasElement, name: string): void {
  canvas.toBlob((blob) => {
    if (blob) downloadBlob(blob, name);
  }, 'image/png');
}
