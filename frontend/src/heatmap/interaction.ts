/**
 * The heatmap's interaction layer: a transparent canvas over the cells that draws the selection (a cell, a row or a
 * column, in red) and the hovered cell's outline, shows the tooltip and reports clicks. Moving the selection or the
 * hover redraws this overlay only; the cells underneath are never repainted.
 */
import { hitTest, colX } from '../layout';
import { hideTooltip, showTooltip } from '../tooltip';
import type { Frame } from './frame';
import type { HeatmapOptions, Selection } from './options';

interface Cell {
  row: number;
  col: number;
}

const SELECTED = '#d50000';
const HOVERED = '#212121';

export interface Overlay {
  canvas: HTMLCanvasElement;
  select(sel: Selection): void;
}

/** The overlay canvas (CSS-positioned by the caller), with `opts.selected` drawn and the listeners attached. */
export function createOverlay(opts: HeatmapOptions, f: Frame, dpr: number): Overlay {
  const { grid } = opts;
  const l = f.layout;
  const canvas = document.createElement('canvas');
  canvas.className = 'mmx-hm-overlay';
  canvas.width = Math.max(1, Math.ceil(l.plotW * dpr));
  canvas.height = Math.max(1, Math.ceil(l.plotH * dpr));
  canvas.tabIndex = 0;
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', `${opts.title}: ${grid.rows} ${opts.rowTitle} x ${grid.cols} ${opts.colTitle}`);
  if (opts.onCellClick) canvas.style.cursor = 'pointer';
  const ctx = canvas.getContext('2d')!;
  let selected: Selection | undefined = opts.selected;
  let hover: Cell | null = null;

  const outline = (cell: Cell, colour: string, w: number) => {
    const x = colX(l, cell.col);
    const y = cell.row * l.cellH;
    const ch = Math.max(l.cellH, 2);
    const cw = Math.max(l.cellW, 2);
    ctx.lineWidth = w;
    ctx.strokeStyle = '#ffffff';
    ctx.strokeRect(x - 1, y - 1, cw + 2, ch + 2);
    ctx.strokeStyle = colour;
    ctx.strokeRect(x - 2, y - 2, cw + 4, ch + 4);
  };
  const draw = () => {
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, l.plotW, l.plotH);
    const row = selected && selected.row !== null && selected.row < grid.rows ? selected.row : null;
    const col = selected && selected.col !== null && selected.col < grid.cols ? selected.col : null;
    ctx.strokeStyle = SELECTED;
    ctx.lineWidth = 2;
    if (row !== null && col !== null) outline({ row, col }, SELECTED, 2);
    else if (row !== null) ctx.strokeRect(1, row * l.cellH - 1, l.plotW - 2, Math.max(l.cellH, 2) + 2);
    else if (col !== null) ctx.strokeRect(colX(l, col) - 1, 1, Math.max(l.cellW, 2) + 2, l.plotH - 2);
    if (hover) outline(hover, HOVERED, 1);
  };
  draw();

  const cellAt = (e: MouseEvent) => {
    const rect = canvas.getBoundingClientRect();
    return hitTest(l, e.clientX - rect.left, e.clientY - rect.top);
  };
  const leave = () => {
    hover = null;
    draw();
    hideTooltip();
  };
  canvas.addEventListener('mousemove', (e) => {
    const cell = cellAt(e);
    if (!cell) return leave();
    if (!hover || hover.row !== cell.row || hover.col !== cell.col) {
      hover = cell;
      draw();
    }
    const content = opts.tooltip(cell.row, cell.col);
    if (content) showTooltip(content, e.clientX, e.clientY);
    else hideTooltip();
  });
  canvas.addEventListener('mouseleave', leave);
  const onClick = opts.onCellClick;
  if (onClick) {
    canvas.addEventListener('click', (e) => {
      const cell = cellAt(e);
      if (cell) onClick(cell.row, cell.col);
    });
  }
  return {
    canvas,
    select(sel) {
      selected = sel;
      draw();
    },
  };
}
