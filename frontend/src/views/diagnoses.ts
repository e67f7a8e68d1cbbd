/**
 * The overview's diagnosis list: one line per layer (name, the backend's diagnosis), the layers with something to
 * say first in model order, and the layers with nothing wrong folded into one expandable line ("48 layers: nothing
 * wrong") once there are FOLD_AT of them. A click (or Enter) on a line opens its layer.
 */
import { el } from '../dom';
import type { LayerDiagnosis } from '../types';

/** Fewer "nothing wrong" lines than this are listed as they are. */
export const FOLD_AT = 5;

/** True when the backend's line says nothing is wrong (its sentences start so) and the layer has no alert. */
export function isNothingWrong(d: LayerDiagnosis, alerted: ReadonlySet<string>): boolean {
  return d.text.startsWith('Nothing wrong') && !alerted.has(d.layer);
}

function line(name: string, d: LayerDiagnosis, current: string | null, open: (layer: string) => void): HTMLElement {
  const li = el('li', 'mmx-clickable');
  li.dataset.layer = name;
  li.tabIndex = 0;
  if (name === current) li.classList.add('mmx-current');
  li.title = `Open ${name} (step ${d.step})`;
  const label = el('span', 'mmx-diagnoses-layer', name);
  label.title = name;
  li.append(label, el('span', 'mmx-diagnoses-text', d.text));
  li.addEventListener('click', () => open(name));
  li.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') open(name);
  });
  return li;
}

/** The list for `lines` (layer -> diagnosis, model order); `alerted`: the layers with an alert for the role. */
export function diagnosisList(
  heading: string,
  lines: Map<string, LayerDiagnosis>,
  alerted: ReadonlySet<string>,
  current: string | null,
  open: (layer: string) => void,
): HTMLElement {
  const box = el('div', 'mmx-diagnoses');
  box.appendChild(el('div', 'mmx-diagnosis-label', heading));
  const entries = [...lines];
  const fine = entries.filter(([, d]) => isNothingWrong(d, alerted));
  const fold = fine.length >= FOLD_AT;
  const ul = el('ul');
  for (const [name, d] of fold ? entries.filter(([, d]) => !isNothingWrong(d, alerted)) : entries) ul.appendChild(line(name, d, current, open));
  box.appendChild(ul);
  if (fold) {
    const details = el('details', 'mmx-diagnoses-fold');
    details.appendChild(el('summary', undefined, `${fine.length} layers: nothing wrong`));
    const inner = el('ul');
    for (const [name, d] of fine) inner.appendChild(line(name, d, current, open));
    details.appendChild(inner);
    box.appendChild(details);
  }
  return box;
}
