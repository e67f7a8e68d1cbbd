/** The control bar: run selector (each run with its colour), role, measure, scope, step slider, colours. */
import { MEASURES, SCOPES, type Scope } from './pairs';
import { type DivergingScheme, type SequentialScheme, runColour } from './scales';
import { type State, type Store, availableRoles, notRecordedOf, roleLabel, runIndex } from './state';
import { stepIndex } from './transforms';

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function labelled(label: string, control: HTMLElement, title?: string): HTMLElement {
  const wrap = el('label', 'mmx-field');
  const span = el('span', 'mmx-field-label', label);
  wrap.append(span, control);
  if (title) wrap.title = title;
  return wrap;
}

function select<T extends string>(options: { value: T; label: string }[], value: T, onChange: (v: T) => void): HTMLSelectElement {
  const s = el('select');
  for (const o of options) s.options.add(new Option(o.label, o.value, false, o.value === value));
  s.value = value;
  s.addEventListener('change', () => onChange(s.value as T));
  return s;
}

export function createControls(store: Store, onReload: () => void): HTMLElement {
  const bar = el('div', 'mmx-controls');
  bar.setAttribute('role', 'toolbar');

  const runsBox = el('fieldset', 'mmx-runs');
  const legend = el('legend', undefined, 'Runs');
  runsBox.appendChild(legend);
  const runsList = el('div', 'mmx-run-list');
  runsBox.appendChild(runsList);

  const roleSlot = el('span');
  const measureBox = el('div', 'mmx-segmented');
  measureBox.setAttribute('role', 'radiogroup');
  measureBox.setAttribute('aria-label', 'measure');
  const scopeSel = select(SCOPES.map((s) => ({ value: s.value, label: s.label })), store.get().scope, (v: Scope) => store.set({ scope: v }));
  scopeSel.className = 'mmx-scope';

  const stepWrap = el('div', 'mmx-step');
  const slider = el('input');
  slider.type = 'range';
  slider.min = '0';
  slider.step = '1';
  slider.className = 'mmx-step-slider';
  slider.setAttribute('aria-label', 'step');
  const stepOut = el('output', 'mmx-step-value');
  const latestBtn = el('button', 'mmx-btn mmx-btn-small', 'latest');
  latestBtn.type = 'button';
  latestBtn.title = 'Follow the latest recorded step';
  stepWrap.append(slider, stepOut, latestBtn);
  slider.addEventListener('input', () => {
    const s = store.get();
    const i = Number(slider.value);
    if (s.steps.length) store.set({ step: i >= s.steps.length - 1 ? null : s.steps[i] });
  });
  latestBtn.addEventListener('click', () => store.set({ step: null }));

  const seqSel = select<SequentialScheme>(
    [
      { value: 'viridis', label: 'viridis' },
      { value: 'cividis', label: 'cividis' },
    ],
    store.get().sequential,
    (v) => store.set({ sequential: v }),
  );
  const divSel = select<DivergingScheme>(
    [
      { value: 'RdBu', label: 'RdBu' },
      { value: 'PuOr', label: 'PuOr' },
    ],
    store.get().diverging,
    (v) => store.set({ diverging: v }),
  );
  const reload = el('button', 'mmx-btn', 'Reload');
  reload.type = 'button';
  reload.title = 'Fetch the latest data';
  reload.addEventListener('click', onReload);

  const row1 = el('div', 'mmx-controls-row');
  row1.append(runsBox);
  const row2 = el('div', 'mmx-controls-row');
  row2.append(
    labelled('Role', roleSlot),
    labelled('Measure', measureBox),
    labelled('Within', scopeSel, 'Which result cells the pair counts and sums cover'),
    labelled('Step', stepWrap),
    labelled('Colours', seqSel, 'Sequential scheme (colour-blind safe)'),
    labelled('Diverging', divSel, 'Diverging scheme for signed values and differences'),
    reload,
  );
  bar.append(row1, row2);

  const renderRuns = (s: State) => {
    runsList.textContent = '';
    if (!s.runs.length) {
      runsList.appendChild(el('span', 'mmx-muted', 'none'));
      return;
    }
    for (const r of s.runs) {
      const lab = el('label', 'mmx-run');
      const cb = el('input');
      cb.type = 'checkbox';
      cb.checked = s.selected.includes(r.run);
      cb.value = r.run;
      cb.addEventListener('change', () => {
        const cur = store.get().selected;
        const next = cb.checked ? [...cur, r.run] : cur.filter((x) => x !== r.run);
        if (!next.length) {
          cb.checked = true; // keep at least one run selected
          return;
        }
        store.set({ selected: next });
      });
      const sw = el('span', 'mmx-swatch');
      sw.style.background = runColour(runIndex(s, r.run));
      const name = el('span', 'mmx-run-name', r.run);
      lab.title = r.run;
      lab.append(cb, sw, name);
      const order = s.selected.indexOf(r.run);
      if (order === 0 && s.selected.length > 1) lab.appendChild(el('span', 'mmx-badge', 'primary'));
      if (r.unreadable && r.unreadable.length) {
        const warn = el('span', 'mmx-badge mmx-badge-warn', `${r.unreadable.length} unreadable`);
        warn.title = r.unreadable.map((u) => `${u.tag}: ${u.reason}`).join('\n');
        lab.appendChild(warn);
      }
      const skipped = notRecordedOf(r);
      if (skipped.length) {
        const note = el('span', 'mmx-badge mmx-badge-note', `${skipped.length} not recorded`);
        note.title = skipped.map((n) => `${n.layer}: ${n.reason}`).join('\n');
        lab.appendChild(note);
      }
      const partly = notRecordedOf(r, 'partlyRecorded');
      if (partly.length) {
        const note = el('span', 'mmx-badge mmx-badge-note', `${partly.length} recorded in part`);
        note.title = partly.map((n) => `${n.layer}: ${n.reason}`).join('\n');
        lab.appendChild(note);
      }
      runsList.appendChild(lab);
    }
  };

  const renderRole = (s: State) => {
    roleSlot.textContent = '';
    const roles = availableRoles(s);
    const opts = (roles.length ? roles : [s.role]).map((r) => ({ value: r, label: roleLabel(r) }));
    const sel = select(opts, s.role, (v) => store.set({ role: v, step: null, layer: s.layer }));
    sel.classList.add('mmx-role');
    roleSlot.appendChild(sel);
  };

  const renderMeasure = (s: State) => {
    measureBox.textContent = '';
    for (const m of MEASURES) {
      const b = el('button', 'mmx-seg', m.label);
      b.type = 'button';
      b.title = m.hint;
      b.setAttribute('role', 'radio');
      b.setAttribute('aria-checked', String(s.measure === m.value));
      b.dataset.measure = m.value;
      b.addEventListener('click', () => store.set({ measure: m.value }));
      measureBox.appendChild(b);
    }
  };

  const renderStep = (s: State) => {
    const n = s.steps.length;
    slider.max = String(Math.max(0, n - 1));
    slider.disabled = n <= 1;
    const i = stepIndex(s.steps, s.step);
    slider.value = String(Math.max(0, i));
    if (!n) stepOut.textContent = '–';
    else stepOut.textContent = `${s.steps[i]}${s.step === null ? ' (latest)' : ''} · ${i + 1}/${n}`;
    latestBtn.disabled = s.step === null;
  };

  const renderAll = (s: State) => {
    renderRuns(s);
    renderRole(s);
    renderMeasure(s);
    renderStep(s);
    scopeSel.value = s.scope;
    seqSel.value = s.sequential;
    divSel.value = s.diverging;
  };
  renderAll(store.get());
  store.subscribe((s, changed) => {
    if (changed.has('runs') || changed.has('selected')) renderRuns(s);
    if (changed.has('runs') || changed.has('selected') || changed.has('role')) renderRole(s);
    if (changed.has('measure')) renderMeasure(s);
    if (changed.has('steps') || changed.has('step')) renderStep(s);
    if (changed.has('scope')) scopeSel.value = s.scope;
  });
  return bar;
}
