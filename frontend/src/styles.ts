/** The tab's stylesheet, injected as a <style> element (TensorBoard's CSP allows inline styles, not external ones). */

export const CSS = `
:root { color-scheme: light; }
body { margin: 0; background: #f5f5f5; }
.mmx-app { font: 13px/1.4 Roboto, "Helvetica Neue", Arial, sans-serif; color: #212121; padding: 0 16px 32px; }
.mmx-app h1 { font-size: 18px; font-weight: 500; margin: 0; }
.mmx-app h2 { font-size: 15px; font-weight: 500; margin: 0; }
.mmx-app h3 { font-size: 13px; font-weight: 500; margin: 0; }
.mmx-header { display: flex; align-items: baseline; gap: 12px; padding: 14px 0 8px; }
.mmx-tagline { color: #616161; }
.mmx-muted { color: #757575; }
.mmx-controls { position: sticky; top: 0; z-index: 5; background: #fff; border: 1px solid #e0e0e0; border-radius: 6px;
  padding: 8px 12px; margin-bottom: 12px; box-shadow: 0 1px 2px rgba(0,0,0,.06); }
.mmx-controls-row { display: flex; flex-wrap: wrap; align-items: center; gap: 10px 18px; }
.mmx-controls-row + .mmx-controls-row { margin-top: 6px; }
.mmx-runs { border: 0; margin: 0; padding: 0; display: flex; align-items: center; gap: 10px; min-width: 0; }
.mmx-runs legend { float: left; font-weight: 500; color: #424242; padding: 0; margin-right: 10px; }
.mmx-run-list { display: flex; flex-wrap: wrap; gap: 4px 14px; }
.mmx-run { display: inline-flex; align-items: center; gap: 5px; cursor: pointer; max-width: 340px; }
.mmx-run-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.mmx-swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; flex: none; }
.mmx-badge { font-size: 10px; background: #eeeeee; border-radius: 8px; padding: 0 6px; color: #424242; }
.mmx-badge-warn { background: #fff3e0; color: #e65100; }
.mmx-badge-note { background: #ede7f6; color: #4527a0; }
.mmx-field { display: inline-flex; align-items: center; gap: 6px; }
.mmx-field-label { color: #616161; }
.mmx-app select, .mmx-app input, .mmx-app button { font: inherit; }
.mmx-app select { padding: 2px 4px; border: 1px solid #bdbdbd; border-radius: 4px; background: #fff; max-width: 260px; }
.mmx-segmented { display: inline-flex; border: 1px solid #bdbdbd; border-radius: 4px; overflow: hidden; }
.mmx-seg { border: 0; background: #fff; padding: 3px 9px; cursor: pointer; color: #424242; }
.mmx-seg + .mmx-seg { border-left: 1px solid #bdbdbd; }
.mmx-seg[aria-checked="true"] { background: #424242; color: #fff; }
.mmx-step { display: inline-flex; align-items: center; gap: 8px; }
.mmx-step-slider { width: 220px; }
.mmx-step-value { min-width: 120px; font-variant-numeric: tabular-nums; }
.mmx-btn { border: 1px solid #bdbdbd; background: #fff; border-radius: 4px; padding: 3px 10px; cursor: pointer; color: #212121; }
.mmx-btn:hover:not(:disabled) { background: #f5f5f5; }
.mmx-btn:disabled { color: #9e9e9e; cursor: default; }
.mmx-btn-small { padding: 1px 7px; font-size: 11px; }
.mmx-section { background: #fff; border: 1px solid #e0e0e0; border-radius: 6px; padding: 12px 14px; margin-bottom: 14px; }
.mmx-section-head { display: flex; align-items: center; gap: 16px; flex-wrap: wrap; }
.mmx-desc { margin: 4px 0 10px; color: #616161; max-width: 980px; }
.mmx-compare-off .mmx-section-body > :not(.mmx-muted) { display: none; }
.mmx-compare-pickers { display: flex; gap: 12px; }
.mmx-row { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.mmx-multiples { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.mmx-slot { min-height: 24px; transition: opacity .15s; }
.mmx-slot:empty { min-height: 0; }
.mmx-loading { opacity: .45; }
.mmx-card { border: 1px solid #eeeeee; border-radius: 6px; padding: 8px 10px; margin: 6px 0; background: #fff; max-width: 100%; overflow-x: auto; box-sizing: border-box; }
.mmx-card-head { display: flex; align-items: center; gap: 8px; flex-wrap: wrap; margin-bottom: 4px; }
.mmx-sub { color: #757575; font-size: 12px; }
.mmx-actions { margin-left: auto; display: flex; gap: 6px; align-items: center; }
.mmx-hm-body { position: relative; }
.mmx-hm-body canvas { position: absolute; }
.mmx-hm-body svg { position: absolute; left: 0; top: 0; overflow: visible; pointer-events: none; }
.mmx-axis text { font-size: 11px; fill: #424242; }
.mmx-axis path, .mmx-axis line { stroke: #9e9e9e; }
.mmx-axis .mmx-emph text { font-weight: 700; fill: #000; }
.mmx-groups text { font-size: 11px; fill: #616161; }
.mmx-group-bracket { fill: none; stroke: #9e9e9e; }
.mmx-corner { font-size: 10px; fill: #9e9e9e; }
.mmx-legends { display: flex; flex-wrap: wrap; gap: 6px 22px; align-items: center; margin-top: 6px; }
.mmx-legend { display: inline-flex; align-items: center; gap: 6px; font-size: 11px; color: #424242; }
.mmx-legend-bar { display: inline-flex; flex-direction: column; }
.mmx-legend-bar svg text { font-size: 10px; fill: #616161; }
.mmx-legend-bar svg path, .mmx-legend-bar svg line { stroke: #9e9e9e; }
.mmx-legend-missing canvas { border: 1px solid #bdbdbd; }
.mmx-tooltip { position: absolute; z-index: 20; pointer-events: none; background: rgba(33,33,33,.95); color: #fff;
  border-radius: 4px; padding: 6px 8px; font: 12px/1.35 Roboto, Arial, sans-serif; max-width: 420px; box-shadow: 0 2px 6px rgba(0,0,0,.3); }
.mmx-tooltip-title { font-weight: 500; word-break: break-all; }
.mmx-tooltip-sub { color: #bdbdbd; margin-bottom: 3px; }
.mmx-tooltip table { border-collapse: collapse; }
.mmx-tooltip th { text-align: left; font-weight: 400; color: #bdbdbd; padding: 0 10px 0 0; white-space: nowrap; }
.mmx-tooltip td { font-variant-numeric: tabular-nums; word-break: break-all; }
.mmx-error { border: 1px solid #ef9a9a; background: #ffebee; color: #b71c1c; border-radius: 4px; padding: 8px 10px; margin: 6px 0;
  display: flex; gap: 8px; align-items: center; flex-wrap: wrap; word-break: break-word; }
.mmx-warning { border: 1px solid #ffcc80; background: #fff8e1; color: #6d4c41; border-radius: 4px; padding: 6px 10px; margin-bottom: 10px; }
.mmx-note { border: 1px solid #90caf9; background: #e3f2fd; color: #0d47a1; border-radius: 4px; padding: 6px 10px; margin-bottom: 8px; max-width: 760px; }
.mmx-unit-detail-empty { background: #fff; border-color: #e0e0e0; color: #424242; padding: 16px; }
.mmx-empty { background: #fff; border: 1px solid #e0e0e0; border-radius: 6px; padding: 24px; max-width: 760px; margin-top: 12px; }
.mmx-empty h2 { margin-bottom: 8px; }
.mmx-app code { background: #f5f5f5; border-radius: 3px; padding: 1px 4px; font-family: "Roboto Mono", Menlo, monospace; font-size: 12px; }
.mmx-matrix { flex: 2 1 560px; }
.mmx-matrix-slot { flex: 2 1 560px; min-width: 0; }
.mmx-chain-slot:empty { display: none; }
.mmx-chain-row { display: flex; flex-wrap: wrap; align-items: stretch; gap: 4px; margin: 4px 0; }
.mmx-chain-direction { width: 64px; color: #757575; font-size: 11px; text-transform: uppercase; align-self: center; }
.mmx-chain-arrow { align-self: center; color: #9e9e9e; font-size: 12px; }
.mmx-chain-step { display: flex; flex-direction: column; align-items: flex-start; gap: 1px; padding: 3px 8px; border: 1px solid #e0e0e0; border-radius: 4px; background: #fafafa; cursor: pointer; font: inherit; text-align: left; }
.mmx-chain-step:hover, .mmx-chain-step:focus-visible { border-color: #0072B2; }
.mmx-chain-step[aria-current="true"] { border-color: #0072B2; box-shadow: inset 0 0 0 1px #0072B2; }
.mmx-chain-name { font-weight: 600; font-size: 12px; }
.mmx-chain-figure { font-size: 12px; color: #424242; }
.mmx-chain-alarm { background: #fdecea; border-color: #D55E00; }
.mmx-chain-alarm .mmx-chain-figure { color: #a33d00; font-weight: 600; }
.mmx-alert-seen { color: #757575; font-size: 12px; }
.mmx-diagnosis-slot { flex: 1 1 300px; min-width: 0; }
.mmx-diagnosis-slot:empty { display: none; }
.mmx-diagnosis { border-left: 4px solid #0072B2; }
.mmx-diagnosis-text { margin: 4px 0; font-size: 14px; }
.mmx-facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 4px 0 8px; }
.mmx-facts dt { color: #757575; }
.mmx-facts dd { margin: 0; font-variant-numeric: tabular-nums; word-break: break-all; }
.mmx-matrix-title { color: #616161; margin-bottom: 3px; }
.mmx-matrix-table { border-collapse: separate; border-spacing: 2px; }
.mmx-matrix-table th { font-weight: 400; color: #616161; font-size: 11px; padding: 2px 6px; }
.mmx-matrix-table th.mmx-z { color: #000; font-weight: 600; }
.mmx-matrix-table td { width: 150px; height: 70px; vertical-align: top; padding: 4px 6px; border-radius: 3px; background: #eee;
  font-variant-numeric: tabular-nums; }
.mmx-matrix-table td.mmx-zpair { outline: 2px dashed rgba(0,0,0,.35); outline-offset: -2px; }
.mmx-term { font-weight: 700; font-size: 11px; }
.mmx-big { font-size: 15px; font-weight: 500; }
.mmx-small { font-size: 10px; opacity: .9; overflow-wrap: anywhere; }
.mmx-layer-picker { display: flex; gap: 12px; }
.mmx-alerts { background: #fff; border: 1px solid #e0e0e0; border-left: 4px solid #D55E00; border-radius: 6px; padding: 10px 14px; margin-bottom: 14px; }
.mmx-alerts.mmx-alerts-none { border-left-color: #009E73; }
.mmx-alerts-head { display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: baseline; }
.mmx-alert-list { margin: 6px 0 0; padding: 0; list-style: none; max-height: 280px; overflow-y: auto;
  display: grid; grid-template-columns: 48px max-content minmax(60px, max-content) max-content max-content max-content minmax(200px, 1fr);
  gap: 0 10px; }
.mmx-alert-list li { grid-column: 1 / -1; display: grid; grid-template-columns: subgrid; align-items: baseline; padding: 3px 4px; border-radius: 4px; }
.mmx-alert-list li:focus-visible { outline: 2px solid #0072B2; }
.mmx-clickable { cursor: pointer; }
.mmx-clickable:hover { background: #f5f5f5; }
.mmx-severity, .mmx-share { flex: none; display: inline-block; width: 48px; height: 8px; border-radius: 4px;
  background: linear-gradient(90deg, #D55E00 calc(var(--sev) * 100%), #eeeeee 0); }
.mmx-share { background: linear-gradient(90deg, #0072B2 calc(var(--share) * 100%), #eeeeee 0); }
.mmx-alert-sev, .mmx-cause-share { font-variant-numeric: tabular-nums; color: #616161; text-align: right; min-width: 3em; }
.mmx-alert-layer, .mmx-diagnoses-layer { font-weight: 500; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.mmx-alert-layer { max-width: 280px; }
.mmx-alert-role, .mmx-alert-step { color: #616161; white-space: nowrap; }
.mmx-alert-text { flex: 1 1 auto; min-width: 0; }
.mmx-diagnosis-label { color: #757575; font-size: 11px; text-transform: uppercase; letter-spacing: .04em; margin: 10px 0 3px; }
.mmx-causes, .mmx-layer-alerts { margin: 0; padding: 0; list-style: none; }
.mmx-causes li, .mmx-layer-alerts li { display: flex; gap: 8px; align-items: baseline; padding: 2px 0; }
.mmx-dead-rows { margin: 8px 0 0; color: #424242; overflow-wrap: anywhere; }
.mmx-diagnoses { margin-top: 8px; }
.mmx-not-recorded { margin-top: 8px; border-left: 3px solid #b39ddb; padding: 2px 8px; color: #424242; }
.mmx-not-recorded ul { margin: 0; padding: 0; list-style: none; }
.mmx-not-recorded-label { color: #4527a0; font-weight: 500; }
.mmx-not-recorded-layer { font-weight: 500; overflow-wrap: anywhere; }
.mmx-not-recorded-reason { overflow-wrap: anywhere; }
.mmx-nonfinite-steps { margin-top: 8px; }
.mmx-step-link { margin: 1px 0; }
.mmx-diagnoses ul { margin: 0; padding: 0; list-style: none; }
.mmx-diagnoses li { display: flex; gap: 12px; align-items: baseline; padding: 2px 4px; border-radius: 4px; }
.mmx-diagnoses li.mmx-current { background: #e3f2fd; }
.mmx-diagnoses-layer { flex: 0 0 auto; max-width: 320px; min-width: 140px; }
.mmx-diagnoses li:focus-visible, .mmx-hm-overlay:focus-visible { outline: 2px solid #0072B2; outline-offset: 1px; }
.mmx-diagnoses-fold > summary { cursor: pointer; color: #2e7d32; padding: 2px 4px; }
.mmx-diagnoses-fold[open] > summary { margin-bottom: 2px; }
.mmx-overview-bar { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 10px; margin-bottom: 4px; }
.mmx-overview-bar[hidden] { display: none; }
.mmx-filter { width: 260px; padding: 2px 6px; border: 1px solid #bdbdbd; border-radius: 4px; }
.mmx-axis .mmx-row-group text { font-weight: 600; fill: #1565c0; }
.mmx-axis .mmx-row-alert text { fill: #bf360c; font-weight: 600; }
.mmx-diagnoses-text { flex: 1 1 auto; min-width: 0; color: #424242; }
.mmx-tooltip td[data-label="diagnosis"] { word-break: normal; overflow-wrap: anywhere; }
`;

export function injectStyles(doc: Document = document): void {
  if (doc.getElementById('mmx-styles')) return;
  const style = doc.createElement('style');
  style.id = 'mmx-styles';
  style.textContent = CSS;
  (doc.head ?? doc.documentElement).appendChild(style);
}
