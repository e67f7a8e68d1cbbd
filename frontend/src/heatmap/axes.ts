/**
 * The heatmap's axes in SVG (d3-axis): row labels on the left (the emphasised row in bold, the full name as a
 * title), column labels on top, thinned to what fits, brackets and labels over column groups, and the corner title.
 * Labels are text nodes, never HTML.
 */
import { axisLeft, axisTop } from 'd3-axis';
import { select } from 'd3-selection';
import { colX, thinTicks, truncate } from '../layout';
import type { Columns } from './columns';
import type { Frame } from './frame';
import { type HeatmapOptions, groupLabel } from './options';

export interface Axes {
  /** Rows and columns that have a label (the PNG export labels the same ones). */
  rowTicks: number[];
  colTicks: number[];
  /** Sets the emphasised row label (null: none). */
  emphasise(row: number | null): void;
}

/** A d3-axis compatible scale over row/column indices at arbitrary positions (columns have gaps between groups). */
function indexScale(n: number, pos: (i: number) => number, range: [number, number]) {
  const f = ((i: number) => pos(i)) as ((i: number) => number) & {
    domain: () => number[];
    range: () => number[];
    copy: () => unknown;
  };
  f.domain = () => Array.from({ length: n }, (_, i) => i);
  f.range = () => range;
  f.copy = () => f;
  return f;
}

/** Row `i`'s label as drawn: the caller's text, or the grid's label, truncated to `max` characters. */
export function rowText(opts: HeatmapOptions, i: number, max: number): string {
  return truncate(opts.rowDisplay?.(i).text ?? opts.grid.rowLabels[i] ?? '', max);
}

/** Draws the axes into a new SVG appended to `body`. */
export function drawAxes(body: HTMLElement, opts: HeatmapOptions, f: Frame, columns: Columns): Axes {
  const { grid } = opts;
  const l = f.layout;
  const svg = select(body).append('svg').attr('class', 'mmx-hm-axes').attr('width', f.width).attr('height', f.height);
  const rowTicks = thinTicks(grid.rows, l.cellH, 13);
  const rowAxis = axisLeft(indexScale(grid.rows, (i) => (i + 0.5) * l.cellH, [0, l.plotH]) as never)
    .tickValues(rowTicks as never)
    .tickSizeOuter(0)
    .tickSize(3)
    .tickFormat(((i: number) => rowText(opts, i, f.rowLabelMax)) as never);
  const rowLabels = svg
    .append('g')
    .attr('class', 'mmx-axis mmx-axis-rows')
    .attr('transform', `translate(${f.left - 1},${f.top})`)
    .call(rowAxis)
    .selectAll<SVGGElement, number>('.tick');
  rowLabels.append('title').text((i) => grid.rowLabels[i] ?? '');
  if (opts.rowDisplay) rowLabels.attr('class', (i) => `tick ${opts.rowDisplay!(i).cls ?? ''}`);
  const emphasise = (row: number | null) => void rowLabels.classed('mmx-emph', (i) => i === row);
  emphasise(opts.emphasisRow ?? null);

  const maxColLabel = grid.colLabels.reduce((m, s, c) => (columns.hidden[c] ? m : Math.max(m, s.length)), 1);
  const colTicks = thinTicks(grid.cols, l.cellW, Math.min(80, maxColLabel * 6.6 + 8)).filter((c) => !columns.hidden[c]);
  const colAxis = axisTop(indexScale(grid.cols, (c) => colX(l, c) + l.cellW / 2, [0, l.plotW]) as never)
    .tickValues(colTicks as never)
    .tickSizeOuter(0)
    .tickSize(3)
    .tickFormat(((c: number) => grid.colLabels[c] ?? '') as never);
  svg.append('g').attr('class', 'mmx-axis mmx-axis-cols').attr('transform', `translate(${f.left},${f.top - 1})`).call(colAxis);

  const groups = columns.groups;
  if (groups && groups.length > 1) {
    const gg = svg.append('g').attr('class', 'mmx-groups').attr('transform', `translate(${f.left},0)`);
    groups.forEach((g, i) => {
      const x = l.groupX[i];
      const w = g.count * l.cellW;
      gg.append('path').attr('d', `M${x + 1},14V10H${x + w - 1}V14`).attr('class', 'mmx-group-bracket');
      gg.append('text').attr('x', x + w / 2).attr('y', 8).attr('text-anchor', 'middle').text(groupLabel(g, w + l.gap));
    });
  }
  svg
    .append('text')
    .attr('class', 'mmx-corner')
    .attr('x', f.left - 6)
    .attr('y', f.top - 8)
    .attr('text-anchor', 'end')
    .text(f.left >= 90 ? `${opts.rowTitle} ↓ ${opts.colTitle} →` : `${opts.colTitle} →`);
  return { rowTicks, colTicks, emphasise };
}
