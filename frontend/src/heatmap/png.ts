/** The PNG export: a standalone picture of a heatmap (title, labels, cells, legends) drawn on one canvas. */
import { compact } from '../format';
import { colX } from '../layout';
import { type Axes, rowText } from './axes';
import type { Columns } from './columns';
import type { Frame } from './frame';
import { FONT, type HeatmapOptions, groupLabel } from './options';

/** A standalone picture of the heatmap: title, labels, cells and legend, for the PNG export. */
export function exportCanvas(opts: HeatmapOptions, f: Frame, cells: HTMLCanvasElement, columns: Columns, axes: Axes): HTMLCanvasElement {
  const { left: mLeft, top: mTop, layout: l } = f;
  const { scales, groups } = columns;
  const { rowTicks, colTicks } = axes;
  const scale = 2;
  const titleH = 40;
  const legendH = 40 * scales.length + 10;
  const W = Math.max(mLeft + l.plotW + 20, 360);
  const H = titleH + mTop + l.plotH + legendH;
  const c = document.createElement('canvas');
  c.width = Math.ceil(W * scale);
  c.height = Math.ceil(H * scale);
  const ctx = c.getContext('2d')!;
  ctx.scale(scale, scale);
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, W, H);
  ctx.fillStyle = '#212121';
  ctx.font = 'bold 14px Roboto, Arial, sans-serif';
  ctx.textBaseline = 'top';
  ctx.fillText(opts.title, 8, 6, W - 16);
  ctx.font = FONT;
  ctx.fillStyle = '#616161';
  if (opts.subtitle) ctx.fillText(opts.subtitle, 8, 24, W - 16);
  const top = titleH + mTop;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(cells, mLeft, top, l.plotW, l.plotH);
  ctx.fillStyle = '#212121';
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'right';
  for (const r of rowTicks) ctx.fillText(rowText(opts, r, f.rowLabelMax), mLeft - 5, top + (r + 0.5) * l.cellH);
  ctx.textAlign = 'center';
  ctx.textBaseline = 'bottom';
  for (const col of colTicks) ctx.fillText(opts.grid.colLabels[col] ?? '', mLeft + colX(l, col) + l.cellW / 2, top - 4);
  if (groups && groups.length > 1) {
    groups.forEach((g, i) => ctx.fillText(groupLabel(g, g.count * l.cellW + l.gap), mLeft + l.groupX[i] + (g.count * l.cellW) / 2, top - 20));
  }
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  let y = top + l.plotH + 14;
  for (const s of scales) {
    for (let x = 0; x < 180; x++) {
      ctx.fillStyle = s.interpolate(x / 179);
      ctx.fillRect(mLeft + x, y, 1, 10);
    }
    ctx.fillStyle = '#212121';
    const fmt = s.tickFormat ?? compact;
    ctx.textAlign = 'center';
    ctx.fillText(fmt(s.domain[0]), mLeft, y + 20);
    ctx.fillText(fmt(s.domain[1]), mLeft + 180, y + 20);
    if (s.kind === 'diverging') ctx.fillText('0', mLeft + 90, y + 20);
    ctx.textAlign = 'left';
    ctx.fillText(s.label, mLeft + 190, y + 5);
    y += 40;
  }
  return c;
}
