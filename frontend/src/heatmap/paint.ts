/**
 * Painting the cells: one pixel per cell into an offscreen image scaled up without smoothing (fast for 1024 x 200
 * and beyond), hatched missing cells under it, then grid lines, values inside cells and notes on missing rows
 * where they fit. Everything here draws on the cell canvas; nothing reads or writes the DOM around it.
 */
import type { Grid } from '../grid';
import { type Layout, colX } from '../layout';
import { type ColourScale, LUT_SIZE, MISSING_FILL, MISSING_HATCH, colourLut, textOn } from '../scales';
import type { Columns } from './columns';
import { FONT } from './options';

/** A hatch pattern tile for missing cells. */
export function hatchTile(): HTMLCanvasElement {
  const c = document.createElement('canvas');
  c.width = 8;
  c.height = 8;
  const x = c.getContext('2d')!;
  x.fillStyle = MISSING_FILL;
  x.fillRect(0, 0, 8, 8);
  x.strokeStyle = MISSING_HATCH;
  x.lineWidth = 1;
  x.beginPath();
  x.moveTo(0, 8);
  x.lineTo(8, 0);
  x.moveTo(-2, 2);
  x.lineTo(2, -2);
  x.moveTo(6, 10);
  x.lineTo(10, 6);
  x.stroke();
  return c;
}

interface ColumnPaint {
  lo: number;
  hi: number;
  inv: number;
  lut32: Uint32Array;
}

/** Paints the cells: one pixel per cell into an offscreen image, scaled onto the plot canvas. */
export function paintCells(
  canvas: HTMLCanvasElement,
  grid: Grid,
  l: Layout,
  columnScale: (c: number) => ColourScale,
  dpr: number,
): void {
  const { rows, cols, values } = grid;
  canvas.width = Math.max(1, Math.ceil(l.plotW * dpr));
  canvas.height = Math.max(1, Math.ceil(l.plotH * dpr));
  const ctx = canvas.getContext('2d')!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  if (!rows || !cols) return;

  const luts = new Map<ColourScale, ColumnPaint>();
  const colPaint: ColumnPaint[] = [];
  for (let c = 0; c < cols; c++) {
    const s = columnScale(c);
    let p = luts.get(s);
    if (!p) {
      const [lo, hi] = s.domain;
      const lut = colourLut(s);
      p = { lo, hi, inv: (LUT_SIZE - 1) / (hi - lo || 1), lut32: new Uint32Array(lut.buffer, lut.byteOffset, LUT_SIZE) };
      luts.set(s, p);
    }
    colPaint.push(p);
  }

  const off = document.createElement('canvas');
  off.width = cols;
  off.height = rows;
  const octx = off.getContext('2d')!;
  const img = octx.createImageData(cols, rows);
  // One 32-bit store per cell: RGBA bytes of the LUT copied as words (same byte order in and out).
  const out = new Uint32Array(img.data.buffer, img.data.byteOffset, rows * cols);
  const max = LUT_SIZE - 1;
  if (luts.size === 1) {
    // One scale: the tight loop the 1024 x 200 target is measured on. NaN (missing) stays transparent,
    // so the hatch drawn under the image shows through.
    const { lo, hi, inv, lut32 } = colPaint[0];
    const n = rows * cols;
    for (let i = 0; i < n; i++) {
      const v = values[i];
      if (v !== v) continue;
      out[i] = lut32[v <= lo ? 0 : v >= hi ? max : ((v - lo) * inv + 0.5) | 0];
    }
  } else {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const i = r * cols + c;
        const v = values[i];
        if (v !== v) continue;
        const { lo, hi, inv, lut32 } = colPaint[c];
        out[i] = lut32[v <= lo ? 0 : v >= hi ? max : ((v - lo) * inv + 0.5) | 0];
      }
    }
  }
  octx.putImageData(img, 0, 0);

  const pattern = ctx.createPattern(hatchTile(), 'repeat');
  ctx.imageSmoothingEnabled = false;
  l.groups.forEach((n, g) => {
    const x = l.groupX[g];
    const w = n * l.cellW;
    ctx.fillStyle = pattern ?? MISSING_FILL;
    ctx.fillRect(x, 0, w, l.plotH);
    ctx.drawImage(off, l.groupStart[g], 0, n, rows, x, 0, w, l.plotH);
  });
}

/** White lines between cells, values inside cells and notes on missing rows, where they fit. */
export function paintAnnotations(canvas: HTMLCanvasElement, g: Grid, l: Layout, columns: Columns, dpr: number): void {
  const ctx = canvas.getContext('2d')!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  if (l.cellW >= 10 && l.cellH >= 10) {
    ctx.strokeStyle = '#ffffff';
    ctx.lineWidth = 1;
    ctx.beginPath();
    l.groups.forEach((n, gi) => {
      const x0 = l.groupX[gi];
      for (let i = 1; i < n; i++) {
        ctx.moveTo(x0 + i * l.cellW, 0);
        ctx.lineTo(x0 + i * l.cellW, l.plotH);
      }
      for (let r = 1; r < g.rows; r++) {
        ctx.moveTo(x0, r * l.cellH);
        ctx.lineTo(x0 + n * l.cellW, r * l.cellH);
      }
    });
    ctx.stroke();
  }
  ctx.font = FONT;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'middle';
  if (l.cellW >= 30 && l.cellH >= 13) {
    for (let c = 0; c < g.cols; c++) {
      const fmt = columns.formatOf(c);
      if (!fmt) continue;
      const s = columns.scaleOf(c);
      const cx = colX(l, c) + l.cellW / 2;
      for (let r = 0; r < g.rows; r++) {
        const v = g.values[r * g.cols + c];
        if (Number.isNaN(v)) continue;
        ctx.fillStyle = textOn(s.colour(v));
        ctx.fillText(fmt(v), cx, (r + 0.5) * l.cellH, l.cellW - 2);
      }
    }
  }
  if (g.rowNotes && l.cellH >= 11) {
    for (let r = 0; r < g.rows; r++) {
      const note = g.rowNotes[r];
      if (!note) continue;
      const y = (r + 0.5) * l.cellH;
      const w = Math.min(l.plotW - 4, ctx.measureText(note).width + 10);
      ctx.fillStyle = 'rgba(255,255,255,0.85)';
      ctx.fillRect(l.plotW / 2 - w / 2, y - 7, w, 14);
      ctx.fillStyle = '#424242';
      ctx.fillText(note, l.plotW / 2, y, l.plotW - 6);
    }
  }
}
