/** The heatmap's public contract: what a view passes in (options, column groups) and what it gets back (handle). */
import type { Grid } from '../grid';
import type { Layout } from '../layout';
import type { ColourScale } from '../scales';
import type { TooltipContent } from '../tooltip';

export interface HeatmapGroup {
  label: string;
  count: number;
  /** Colour scale of this group's columns (default: the heatmap's scale). */
  scale?: ColourScale;
  /** Text drawn inside cells of this group when they are big enough. */
  cellFormat?: (v: number) => string;
  /** Label used when `label` does not fit over the group. */
  shortLabel?: string;
  /** No per-column labels (a one-column group named by its group label). */
  hideColLabels?: boolean;
}

/** The highlighted row, column or cell (both set); null = none on that axis. */
export interface Selection {
  row: number | null;
  col: number | null;
}

export interface HeatmapOptions {
  id: string;
  title: string;
  subtitle?: string;
  grid: Grid;
  scale: ColourScale;
  groups?: HeatmapGroup[];
  rowTitle: string;
  colTitle: string;
  /** Width available to the whole heatmap (labels included), CSS px. */
  width: number;
  maxPlotHeight?: number;
  minCellW?: number;
  maxCellW?: number;
  minCellH?: number;
  maxCellH?: number;
  cellFormat?: (v: number) => string;
  tooltip: (row: number, col: number) => TooltipContent | null;
  onCellClick?: (row: number, col: number) => void;
  selected?: Selection;
  headerExtras?: Node[];
  /** Parts of the export file names (run, role, view, ...). */
  fileBase: string[];
  /** Colour stripe (the run's colour) beside the title. */
  accent?: string;
  rowLabelMax?: number;
  /** A row's label as drawn (default: the grid's label, truncated) and a class for its style; the full grid label stays its title. */
  rowDisplay?: (row: number) => { text: string; cls?: string };
  /** Emphasised row (e.g. the selected layer) in the row labels. */
  emphasisRow?: number | null;
  /** Legend text for hatched cells (default: "missing (no record), not zero"). */
  missingLabel?: string;
}

export interface HeatmapHandle {
  root: HTMLElement;
  layout: Layout;
  renderMs: number;
  toPng(): HTMLCanvasElement;
  /** Moves the selection outline (and the emphasised row label): redraws the overlay only, never the cells. */
  select(sel: Selection, emphasisRow?: number | null): void;
}

/** The group's label, or its short label when the full one (about 6 px a character) is wider than `width`. */
export function groupLabel(g: HeatmapGroup, width: number): string {
  return g.shortLabel && g.label.length * 6 > width ? g.shortLabel : g.label;
}

/** Font of every label drawn on a canvas (cell values, row notes, PNG export). */
export const FONT = '11px Roboto, "Helvetica Neue", Arial, sans-serif';
