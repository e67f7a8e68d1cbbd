/**
 * The layer detail's two cards at the step: the 3x3 pair matrix (exact counts, sums and means per pair, in both
 * cell scopes, with the record's non-finite values) and the diagnosis (text, causes with shares, dead rows, the
 * layer's alerts; a note where the layer has no record at or before the step).
 */
import { rankedCauses } from '../api';
import { el } from '../dom';
import { compact, exact, nonFiniteText, pct } from '../format';
import { CLASS_LETTERS, CLASS_NAMES, describePair, measureValues, pairStats, scoped, type Scope } from '../pairs';
import { textOn } from '../scales';
import { type State, operandsOf, roleLabel } from '../state';
import { type DiagnosisResponse, type LayerTotals, TERMS } from '../types';
import { severityBar } from './alerts';
import { measureScale } from './measure';

/** The diagnosis card: its text, the causes with their shares, dead rows, and the layer's alerts. */
export function diagnosisCard(s: State, layer: string, d: DiagnosisResponse | null): HTMLElement {
  const box = el('div', 'mmx-card mmx-diagnosis');
  box.dataset.layer = layer;
  const head = el('div', 'mmx-card-head');
  head.appendChild(el('h3', undefined, 'Diagnosis'));
  box.appendChild(head);
  if (!d) {
    box.classList.add('mmx-diagnosis-none');
    box.appendChild(el('p', 'mmx-muted', `${layer} has no ${roleLabel(s.role)} record at or before step ${s.step ?? 'latest'}.`));
    return box;
  }
  head.appendChild(el('span', 'mmx-sub', `${roleLabel(d.role)}, step ${d.step}`));
  box.appendChild(el('p', 'mmx-diagnosis-text', d.text));

  const causes = rankedCauses(d);
  if (causes.length) {
    box.appendChild(el('div', 'mmx-diagnosis-label', 'Causes (share of the near-zero results’ products)'));
    const ul = el('ul', 'mmx-causes');
    for (const c of causes) {
      const li = el('li', 'mmx-cause');
      li.dataset.share = String(c.share);
      const bar = el('span', 'mmx-share');
      bar.style.setProperty('--share', String(Math.max(0, Math.min(1, c.share ?? 0))));
      bar.title = `share ${exact(c.share)}`;
      li.append(bar, el('span', 'mmx-cause-share', pct(c.share, 0)), el('span', 'mmx-cause-name', c.name));
      ul.appendChild(li);
    }
    box.appendChild(ul);
  }
  if (d.dead_rows.length) {
    const shown = d.dead_rows.slice(0, 24).join(', ');
    const more = d.dead_rows.length > 24 ? `, … (${d.dead_rows.length} in all)` : '';
    box.appendChild(el('p', 'mmx-dead-rows', `Dead rows (near zero in every cell): ${shown}${more}`));
  }
  if (d.alerts.length) {
    box.appendChild(el('div', 'mmx-diagnosis-label', `Alerts for this layer (${d.alerts.length})`));
    const ul = el('ul', 'mmx-layer-alerts');
    for (const a of d.alerts) {
      const li = el('li', 'mmx-alert');
      li.dataset.kind = a.kind;
      li.append(severityBar(a.severity), el('span', 'mmx-alert-text', a.message));
      li.title = `${a.kind.replace(/_/g, ' ')} · severity ${exact(a.severity)} · since step ${a.first_step}`;
      ul.appendChild(li);
    }
    box.appendChild(ul);
  }
  return box;
}

export function matrixCard(s: State, run: string, t: LayerTotals): HTMLElement {
  const operands = operandsOf(s, run, t.name, s.role);
  const card = el('div', 'mmx-card mmx-matrix');
  card.dataset.layer = t.name;
  const head = el('div', 'mmx-card-head');
  head.appendChild(el('h3', undefined, `${t.name} · 3×3 pair matrix`));
  head.appendChild(el('span', 'mmx-sub', `${t.op}, ${t.units} units, ${roleLabel(s.role)}, step ${t.step}`));
  card.appendChild(head);

  const facts = el('dl', 'mmx-facts');
  const fact = (k: string, v: string) => {
    facts.append(el('dt', undefined, k), el('dd', undefined, v));
  };
  fact('near-zero results', `${exact(t.near_zero_cells)} of ${exact(t.cells)} (${pct(t.near_zero_fraction, 2)})`);
  fact('dead units', exact(t.dead_units));
  fact('thresholds', `${operands[0]} ${exact(t.thresholds[0])}, ${operands[1]} ${exact(t.thresholds[1])}, result ${exact(t.thresholds[2])}`);
  const nonFinite = nonFiniteText(t.nonfinite, operands);
  if (nonFinite) {
    fact('non-finite values', `${nonFinite} (NaN or inf)`);
    card.classList.add('mmx-has-nonfinite');
  }
  card.appendChild(facts);

  const tables = el('div', 'mmx-row');
  for (const scope of ['near_zero', 'all'] as Scope[]) tables.appendChild(matrixTable(s, t, scope, operands));
  card.appendChild(tables);
  return card;
}

function matrixTable(s: State, t: LayerTotals, scope: Scope, operands: string[]): HTMLElement {
  const { counts, sums } = scoped(t, scope);
  const vals = measureValues(counts, sums, s.measure);
  const scale = measureScale(s, [Float64Array.from(vals, (v) => (v === null ? NaN : v))]);
  const wrap = el('div', 'mmx-matrix-wrap');
  wrap.dataset.scope = scope;
  wrap.appendChild(el('div', 'mmx-matrix-title', scope === 'near_zero' ? 'near-zero result cells' : 'all result cells'));
  const table = el('table', 'mmx-matrix-table');
  const thead = el('thead');
  const hr = el('tr');
  hr.appendChild(el('th', 'mmx-corner-cell', `${operands[0]} ↓ / ${operands[1]} →`));
  for (let b = 0; b < 3; b++) hr.appendChild(el('th', b === 1 ? 'mmx-z' : undefined, `${CLASS_LETTERS[b]} · ${CLASS_NAMES[b]}`));
  thead.appendChild(hr);
  table.appendChild(thead);
  const tbody = el('tbody');
  for (let a = 0; a < 3; a++) {
    const tr = el('tr');
    tr.appendChild(el('th', a === 1 ? 'mmx-z' : undefined, `${CLASS_LETTERS[a]} · ${CLASS_NAMES[a]}`));
    for (let b = 0; b < 3; b++) {
      const i = 3 * a + b;
      const p = pairStats(counts, sums, i);
      const v = vals[i];
      const td = el('td', a === 1 || b === 1 ? 'mmx-zpair' : undefined);
      td.dataset.term = TERMS[i];
      if (v !== null && Number.isFinite(v)) {
        const bg = scale.colour(v);
        td.style.background = bg;
        td.style.color = textOn(bg);
      }
      td.appendChild(el('div', 'mmx-term', TERMS[i]));
      td.appendChild(el('div', 'mmx-big', s.measure === 'signed_sum' ? compact(p.sum) : s.measure === 'count_share' ? pct(p.countShare, 1) : pct(p.absSumShare, 1)));
      const small = el('div', 'mmx-small');
      small.appendChild(el('div', undefined, `count ${exact(p.count)}`));
      small.appendChild(el('div', undefined, `sum ${exact(p.sum)}`));
      small.appendChild(el('div', undefined, `mean ${p.mean === null ? '–' : compact(p.mean)}`));
      td.appendChild(small);
      td.title = `${TERMS[i]}: ${describePair(i, operands)}\ncount ${exact(p.count)}\nshare of counts ${exact(p.countShare)}\nsum ${exact(p.sum)}\nshare of |sums| ${exact(p.absSumShare)}\nmean ${exact(p.mean)}`;
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
  table.appendChild(tbody);
  wrap.appendChild(table);
  return wrap;
}
