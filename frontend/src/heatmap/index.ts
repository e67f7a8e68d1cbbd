/**
 * The canvas heatmap, assembled from its parts: the card (card.ts) around a plot of cells painted on a canvas
 * (paint.ts), d3 axes (axes.ts) and legends (legend.ts), an overlay for hover, selection and clicks
 * (interaction.ts), PNG (png.ts) and CSV export, and the timing it reports (telemetry.ts).
 * Every label is set as text (d3's .text() / textContent), never parsed as HTML.
 */
import { downloadCanvas, downloadCsv, fileName } from '../export';
import { drawAxes } from './axes';
import { button, createCard } from './card';
import { columnsOf } from './columns';
import { frameOf } from './frame';
import { createOverlay } from './interaction';
import { legends } from './legend';
import type { HeatmapHandle, HeatmapOptions } from './options';
import { paintAnnotations, paintCells } from './paint';
import { exportCanvas } from './png';
import { reportRendered } from './telemetry';

export { groupLabel, type HeatmapGroup, type HeatmapHandle, type HeatmapOptions, type Selection } from './options';
export { onHeatmapRendered } from './telemetry';

/** Builds a heatmap card; the caller appends `root` where it belongs. */
export function createHeatmap(opts: HeatmapOptions): HeatmapHandle {
  const t0 = performance.now();
  const { grid } = opts;
  const columns = columnsOf(opts);
  const f = frameOf(opts, columns);
  const l = f.layout;
  const dpr = Math.min(2, window.devicePixelRatio || 1);
  const card = createCard(opts, f.width, f.height);

  const cells = document.createElement('canvas');
  cells.className = 'mmx-hm-cells';
  const overlay = createOverlay(opts, f, dpr);
  for (const c of [cells, overlay.canvas]) {
    c.style.left = `${f.left}px`;
    c.style.top = `${f.top}px`;
    c.style.width = `${l.plotW}px`;
    c.style.height = `${l.plotH}px`;
  }
  paintCells(cells, grid, l, columns.scaleOf, dpr);
  paintAnnotations(cells, grid, l, columns, dpr);
  const axes = drawAxes(card.body, opts, f, columns);
  card.body.append(cells, overlay.canvas);
  card.root.appendChild(legends(columns.scales, grid, opts.missingLabel));

  const toPng = () => exportCanvas(opts, f, cells, columns, axes);
  const name = (ext: string) => fileName([...opts.fileBase, opts.id], ext);
  card.actions.append(
    button('PNG', 'Download this heatmap as a PNG image', () => downloadCanvas(toPng(), name('png'))),
    button('CSV', 'Download the data of this heatmap as CSV', () => downloadCsv(grid, opts.rowTitle, name('csv'))),
  );
  const renderMs = reportRendered(opts.id, card.root, f, grid.rows, grid.cols, t0);
  return {
    root: card.root,
    layout: l,
    renderMs,
    toPng,
    select(sel, emphasisRow) {
      overlay.select(sel);
      if (emphasisRow !== undefined) axes.emphasise(emphasisRow);
    },
  };
}
