import { describe, expect, it } from 'vitest';
import { MAX_GROUP, defaultOpen, groupLayers, nameFilter, overviewRows, pooledTotals } from '../src/layergroups';
import { layer } from './fixtures';

/** The 54 recorded layers of keras.applications.ResNet50 (as e2e/make_many_logs.py names them). */
function resnet50(): string[] {
  const names = ['conv1_conv'];
  for (const [stage, blocks] of [[2, 3], [3, 4], [4, 6], [5, 3]]) {
    for (let b = 1; b <= blocks; b++) for (const i of b === 1 ? [0, 1, 2, 3] : [1, 2, 3]) names.push(`conv${stage}_block${b}_${i}_conv`);
  }
  return [...names, 'predictions'];
}

const dense = (n: number) => Array.from({ length: n }, (_, i) => (i ? `dense_${i}` : 'dense'));
const labels = (names: string[]) => groupLayers(names).map((g) => [g.label, g.members.length]);

describe('groupLayers', () => {
  it('keeps a small model flat', () => {
    expect(groupLayers(dense(MAX_GROUP)).every((g) => g.members.length === 1)).toBe(true);
  });

  it('groups ResNet50 by stage, in model order', () => {
    const names = resnet50();
    expect(names.length).toBe(54);
    expect(labels(names)).toEqual([
      ['conv1_conv', 1],
      ['conv2_*', 10],
      ['conv3_*', 13],
      ['conv4_*', 19],
      ['conv5_*', 10],
      ['predictions', 1],
    ]);
  });

  it('chunks a run of layers no prefix splits (dense, dense_1, ...), 200 and 500 layers', () => {
    for (const n of [200, 500]) {
      const groups = groupLayers(dense(n));
      expect(groups.flatMap((g) => g.members)).toEqual(Array.from({ length: n }, (_, i) => i));
      expect(Math.max(...groups.map((g) => g.members.length))).toBe(MAX_GROUP);
      expect(new Set(groups.map((g) => g.key)).size).toBe(groups.length);
    }
    expect(groupLayers(dense(200))[1].label).toBe('dense_1 … dense_24');
  });

  it('groups Keras paths by their segments, splitting a group that is too large one level deeper', () => {
    const names: string[] = [];
    for (let b = 0; b < 5; b++) for (const part of ['attention/query', 'attention/key', 'attention/value', 'attention/output', 'ffn/dense', 'ffn/dense_1']) names.push(`block_${b}/${part}`);
    expect(labels(names)).toEqual([
      ['block_0/*', 6],
      ['block_1/*', 6],
      ['block_2/*', 6],
      ['block_3/*', 6],
      ['block_4/*', 6],
    ]);
    const big = Array.from({ length: 40 }, (_, i) => `encoder/${i < 20 ? 'attn' : 'mlp'}/dense_${i}`);
    expect(labels(big)).toEqual([
      ['encoder/attn/*', 20],
      ['encoder/mlp/*', 20],
    ]);
  });
});

describe('nameFilter', () => {
  it('takes a case-insensitive regex, or the text as a substring when it is not one', () => {
    expect(['conv2_block1_0_conv', 'conv3_block1_0_conv', 'predictions'].filter(nameFilter('^conv[23]_block1_0'))).toHaveLength(2);
    expect(nameFilter('PRED')('predictions')).toBe(true);
    expect(nameFilter('conv[')('a_conv[x')).toBe(true);
    expect(nameFilter('  ')('anything')).toBe(true);
  });
});

describe('overviewRows', () => {
  const names = resnet50();
  const groups = groupLayers(names);
  const conv3 = groups[2].key;

  it('shows closed groups as one row, open ones with their layers, single layers as they are', () => {
    const rows = overviewRows(groups, names, new Set([conv3]));
    expect(rows.map((r) => (r.kind === 'group' ? `${r.group.label}${r.open ? '+' : ''}` : names[r.index]))).toEqual([
      'conv1_conv',
      'conv2_*',
      'conv3_*+',
      ...names.filter((n) => n.startsWith('conv3_')),
      'conv4_*',
      'conv5_*',
      'predictions',
    ]);
  });

  it('with a filter: only the matching layers, under their open groups', () => {
    const rows = overviewRows(groups, names, new Set(), '_3_conv$');
    const shown = rows.filter((r) => r.kind === 'layer').map((r) => names[(r as { index: number }).index]);
    expect(shown).toEqual(names.filter((n) => n.endsWith('_3_conv')));
    expect(rows.filter((r) => r.kind === 'group').map((r) => (r as { shown: number }).shown)).toEqual([3, 4, 6, 3]);
  });

  it('opens every group of a 54-layer model by default, and only those holding kept layers beyond', () => {
    expect(defaultOpen(groups, names, new Set()).size).toBe(groups.length);
    const many = dense(200);
    const g = groupLayers(many);
    const open = defaultOpen(g, many, new Set(['dense_137']));
    expect([...open]).toEqual([g.find((x) => x.members.includes(137))!.key]);
  });
});

describe('pooledTotals', () => {
  it('adds counts, sums and cells, and gives the pooled near-zero fraction', () => {
    const a = layer('a', 0, { cells: 10, near_zero_cells: 1, dead_units: 1 });
    const b = layer('b', 1, { cells: 30, near_zero_cells: 9, step: 950 });
    const p = pooledTotals('conv2_*', [a, b]);
    expect(p.counts).toEqual(a.counts.map((c, i) => c + b.counts[i]));
    expect(p.near_zero_sums[0]).toBeCloseTo(1.0, 12);
    expect(p.near_zero_fraction).toBe(10 / 40);
    expect([p.name, p.op, p.units, p.step, p.dead_units]).toEqual(['conv2_*', 'group', 8, 950, 1]);
  });
});
