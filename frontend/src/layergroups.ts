/**
 * The overview's rows for models of hundreds of layers: layers grouped by their Keras path prefix ("block_1/…")
 * or name prefix ("conv2_…"), groups opened or closed, a filter on layer names, and each group's pooled totals.
 * Pure functions over layer names and totals, unit-tested in test/layergroups.test.ts.
 */
import type { LayerTotals } from './types';

/** A model of at most this many layers is shown flat; no group holds more (larger ones are split or chunked). */
export const MAX_GROUP = 24;

export interface LayerGroup {
  /** Unique within a model (the prefix, or the first and last layer of a chunk). */
  key: string;
  /** What the row says: "conv2_*", "block_1/*", "dense … dense_23". */
  label: string;
  /** Indices of its layers (model order, consecutive). */
  members: number[];
}

/** One row of the overview: a group (its pooled totals) or a layer (nested under its group when `nested`). */
export type OverviewRow = { kind: 'group'; group: LayerGroup; open: boolean; shown: number } | { kind: 'layer'; index: number; nested: boolean };

/** A name's parts: Keras path segments when it has a '/', else its '_'-separated words. */
function parts(name: string): { sep: string; words: string[] } {
  const sep = name.includes('/') ? '/' : '_';
  return { sep, words: name.split(sep) };
}

/** The first `depth` parts, when the name has more than that (else the whole name: a layer of its own). */
function prefixOf(name: string, depth: number): string {
  const { sep, words } = parts(name);
  return words.length > depth ? `${words.slice(0, depth).join(sep)}${sep}*` : name;
}

/** Splits `idx` (consecutive) into runs of consecutive layers with the same key. */
function runsBy(idx: number[], key: (i: number) => string): number[][] {
  const out: number[][] = [];
  let prev: string | null = null;
  for (const i of idx) {
    const k = key(i);
    if (k !== prev) out.push([]);
    out[out.length - 1].push(i);
    prev = k;
  }
  return out;
}

function chunks(names: string[], idx: number[]): LayerGroup[] {
  const out: LayerGroup[] = [];
  for (let a = 0; a < idx.length; a += MAX_GROUP) {
    const m = idx.slice(a, a + MAX_GROUP);
    const label = `${names[m[0]]} … ${names[m[m.length - 1]]}`;
    out.push({ key: label, label, members: m });
  }
  return out;
}

function split(names: string[], idx: number[], depth: number): LayerGroup[] {
  const runs = runsBy(idx, (i) => prefixOf(names[i], depth));
  const out: LayerGroup[] = [];
  for (const run of runs) {
    const label = run.length > 1 ? prefixOf(names[run[0]], depth) : names[run[0]];
    if (run.length <= MAX_GROUP) out.push({ key: `${label}@${run[0]}`, label, members: run });
    else if (depth < 8 && runsBy(run, (i) => prefixOf(names[i], depth + 1)).some((r) => r.length > 1)) out.push(...split(names, run, depth + 1));
    else out.push(...chunks(names, run));
  }
  return out;
}

/**
 * The groups of a model's layers (names in model order): none for a model of at most MAX_GROUP layers; else runs
 * of consecutive layers sharing a prefix of their parts, the shortest prefix that keeps each group within
 * MAX_GROUP, and consecutive chunks of a run no prefix splits (dense, dense_1, …). Groups of one layer are
 * kept: `overviewRows` shows them as a plain layer row.
 */
export function groupLayers(names: string[]): LayerGroup[] {
  if (names.length <= MAX_GROUP) return names.map((n, i) => ({ key: `${n}@${i}`, label: n, members: [i] }));
  return split(
    names,
    names.map((_, i) => i),
    1,
  );
}

/**
 * The layer-name filter: a case-insensitive regular expression, or the text as a plain substring when it is not a
 * valid one; empty text matches every name.
 */
export function nameFilter(text: string): (name: string) => boolean {
  const t = text.trim();
  if (!t) return () => true;
  try {
    const re = new RegExp(t, 'i');
    return (n) => re.test(n);
  } catch {
    const low = t.toLowerCase();
    return (n) => n.toLowerCase().includes(low);
  }
}

/**
 * The rows to draw: each group of several layers as a row, followed by its layers when open (or when a filter is
 * set: then only the layers it matches, and groups without any are left out); a group of one layer as that layer.
 */
export function overviewRows(groups: LayerGroup[], names: string[], open: ReadonlySet<string>, filter = ''): OverviewRow[] {
  const match = nameFilter(filter);
  const filtering = filter.trim() !== '';
  const rows: OverviewRow[] = [];
  for (const g of groups) {
    const shown = g.members.filter((i) => match(names[i]));
    if (!shown.length) continue;
    if (g.members.length === 1) {
      rows.push({ kind: 'layer', index: g.members[0], nested: false });
      continue;
    }
    const isOpen = filtering || open.has(g.key);
    rows.push({ kind: 'group', group: g, open: isOpen, shown: shown.length });
    if (isOpen) for (const i of shown) rows.push({ kind: 'layer', index: i, nested: true });
  }
  return rows;
}

/** Models of at most this many layers start with every group open (ResNet50's 54 fit a page at 16 px a row). */
export const OPEN_ALL = 64;

/**
 * The groups open by default: all of them for at most OPEN_ALL layers, else those holding a layer in `keep`
 * (the layers with alerts, the selected layer), so that a model of hundreds of layers starts as a page of groups.
 */
export function defaultOpen(groups: LayerGroup[], names: string[], keep: ReadonlySet<string>): Set<string> {
  const all = names.length <= OPEN_ALL;
  return new Set(groups.filter((g) => all || g.members.some((i) => keep.has(names[i]))).map((g) => g.key));
}

function addInto(acc: number[], xs: readonly (number | null)[]): void {
  xs.forEach((v, i) => (acc[i] = (acc[i] ?? 0) + (v ?? NaN)));
}

/**
 * A group's pooled totals: counts, sums, cells and dead units added over its layers (so shares are weighted by
 * each layer's products), near-zero fraction = near-zero cells / cells. Named by the group's label, op "group".
 */
export function pooledTotals(label: string, layers: LayerTotals[]): LayerTotals {
  const counts: number[] = [];
  const sums: number[] = [];
  const nzCounts: number[] = [];
  const nzSums: number[] = [];
  const nonfinite: number[] = [];
  let cells = 0;
  let nzCells = 0;
  for (const l of layers) {
    addInto(counts, l.counts);
    addInto(sums, l.sums);
    addInto(nzCounts, l.near_zero_counts);
    addInto(nzSums, l.near_zero_sums);
    addInto(nonfinite, l.nonfinite);
    cells += l.cells;
    nzCells += l.near_zero_cells;
  }
  return {
    name: label,
    index: layers[0]?.index ?? 0,
    op: 'group',
    units: layers.reduce((a, l) => a + l.units, 0),
    step: layers.reduce((a, l) => Math.max(a, l.step), 0),
    counts,
    sums,
    near_zero_counts: nzCounts,
    near_zero_sums: nzSums,
    cells,
    near_zero_cells: nzCells,
    near_zero_fraction: cells ? nzCells / cells : null,
    dead_units: layers.reduce((a, l) => a + l.dead_units, 0),
    thresholds: [],
    nonfinite,
  };
}
