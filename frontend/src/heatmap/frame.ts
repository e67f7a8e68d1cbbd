/**
 * A heatmap's geometry: the cell layout (layout.ts) inside margins for the row labels (left), the column labels
 * and group brackets (top). All sizes in CSS px.
 */
import { type Layout, computeLayout, labelMargin } from '../layout';
import type { Columns } from './columns';
import type { HeatmapOptions } from './options';

export interface Frame {
  layout: Layout;
  /** Left edge of the plot (the row labels' width). */
  left: number;
  /** Top edge of the plot (column labels, and group labels when there are several groups). */
  top: number;
  /** The whole heatmap: margins and plot. */
  width: number;
  height: number;
  /** Longest row label, in characters, before it is truncated. */
  rowLabelMax: number;
}

const RIGHT = 16;
const BOTTOM = 6;

export function frameOf(opts: HeatmapOptions, columns: Columns): Frame {
  const grid = opts.grid;
  const rowLabelMax = opts.rowLabelMax ?? 30;
  const shown = opts.rowDisplay ? grid.rowLabels.map((_, i) => opts.rowDisplay!(i).text) : grid.rowLabels;
  const left = labelMargin(shown, rowLabelMax);
  const top = (columns.groups && columns.groups.length > 1 ? 20 : 0) + 24;
  const layout = computeLayout({
    rows: grid.rows,
    cols: grid.cols,
    groups: columns.groups?.map((g) => g.count),
    gap: 12,
    maxPlotWidth: Math.max(60, opts.width - left - RIGHT),
    maxPlotHeight: opts.maxPlotHeight ?? 420,
    minCellW: opts.minCellW ?? 2,
    maxCellW: opts.maxCellW ?? 44,
    minCellH: opts.minCellH ?? 0.25,
    maxCellH: opts.maxCellH ?? 22,
  });
  return { layout, left, top, width: left + layout.plotW + RIGHT, height: top + layout.plotH + BOTTOM, rowLabelMax };
}
