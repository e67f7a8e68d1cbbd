/** Which colour scale, cell format and label visibility each column of a heatmap has (from its column groups). */
import type { ColourScale } from '../scales';
import type { HeatmapGroup, HeatmapOptions } from './options';

export interface Columns {
  /** The groups, or undefined when none were given or their counts do not add up to the grid's columns. */
  groups: HeatmapGroup[] | undefined;
  scaleOf: (c: number) => ColourScale;
  formatOf: (c: number) => ((v: number) => string) | undefined;
  /** True where a column has no label of its own. */
  hidden: boolean[];
  /** The distinct scales in column order (one legend each). */
  scales: ColourScale[];
}

export function columnsOf(opts: HeatmapOptions): Columns {
  const n = opts.grid.cols;
  const groups = opts.groups && opts.groups.reduce((a, g) => a + g.count, 0) === n ? opts.groups : undefined;
  const scale: ColourScale[] = [];
  const format: (((v: number) => string) | undefined)[] = [];
  const hidden: boolean[] = [];
  for (const g of groups ?? [{ label: '', count: n }]) {
    for (let i = 0; i < g.count; i++) {
      scale.push(g.scale ?? opts.scale);
      format.push(g.cellFormat ?? opts.cellFormat);
      hidden.push(!!g.hideColLabels);
    }
  }
  return {
    groups,
    scaleOf: (c) => scale[c] ?? opts.scale,
    formatOf: (c) => format[c],
    hidden,
    scales: [...new Set(scale)],
  };
}
