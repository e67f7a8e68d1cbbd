/**
 * The colour legends under a heatmap: one bar per distinct colour scale, painted from the very LUT the cells use,
 * with a d3 axis of its ticks; and the hatched "missing" swatch when the grid has missing cells.
 */
import { axisBottom } from 'd3-axis';
import { scaleLinear } from 'd3-scale';
import { select } from 'd3-selection';
import { compact } from '../format';
import { type Grid, hasMissing } from '../grid';
import { type ColourScale, LUT_SIZE, MISSING_FILL, colourLut } from '../scales';
import { hatchTile } from './paint';

/** The legends row: one legend per scale (column order), then the missing-cell swatch if any cell is missing. */
export function legends(scales: ColourScale[], grid: Grid, missingLabel = 'missing (no record), not zero'): HTMLElement {
  const box = document.createElement('div');
  box.className = 'mmx-legends';
  for (const s of scales) box.appendChild(legendElement(s));
  if (hasMissing(grid)) box.appendChild(missingLegend(missingLabel));
  return box;
}

function legendElement(scale: ColourScale, width = 180): HTMLElement {
  const el = document.createElement('div');
  el.className = 'mmx-legend';
  const label = document.createElement('span');
  label.className = 'mmx-legend-label';
  label.textContent = scale.label;
  const bar = document.createElement('div');
  bar.className = 'mmx-legend-bar';
  const c = document.createElement('canvas');
  c.width = width;
  c.height = 10;
  c.style.width = `${width}px`;
  c.style.height = '10px';
  const ctx = c.getContext('2d');
  if (ctx) {
    // The legend uses the very LUT the cells are painted with.
    const lut = colourLut(scale);
    const img = ctx.createImageData(width, 10);
    for (let x = 0; x < width; x++) {
      const k = Math.round((x / (width - 1)) * (LUT_SIZE - 1)) * 4;
      for (let y = 0; y < 10; y++) {
        const o = (y * width + x) * 4;
        img.data[o] = lut[k];
        img.data[o + 1] = lut[k + 1];
        img.data[o + 2] = lut[k + 2];
        img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
  }
  const svg = select(bar).append('svg').attr('width', width + 24).attr('height', 20);
  const ax = scaleLinear().domain(scale.domain).range([0, width]);
  const ticks = scale.kind === 'diverging' ? [scale.domain[0], 0, scale.domain[1]] : ax.ticks(4);
  svg
    .append('g')
    .attr('transform', 'translate(12,0)')
    .call(axisBottom(ax).tickValues(ticks).tickSize(4).tickFormat((v) => (scale.tickFormat ?? compact)(+v)));
  bar.prepend(c);
  c.style.marginLeft = '12px';
  el.append(label, bar);
  return el;
}

function missingLegend(text: string): HTMLElement {
  const el = document.createElement('div');
  el.className = 'mmx-legend mmx-legend-missing';
  const c = document.createElement('canvas');
  c.width = 16;
  c.height = 10;
  const ctx = c.getContext('2d');
  if (ctx) {
    ctx.fillStyle = ctx.createPattern(hatchTile(), 'repeat') ?? MISSING_FILL;
    ctx.fillRect(0, 0, 16, 10);
  }
  const t = document.createElement('span');
  t.textContent = text;
  el.append(c, t);
  return el;
}
