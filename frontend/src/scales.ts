/**
 * Colour: colour-blind-safe schemes (viridis/cividis sequential, RdBu/PuOr diverging), the run palette
 * (Okabe-Ito) and the lookup tables the canvas renderer uses.
 */
import { scaleDiverging, scaleLinear, scaleSequential } from 'd3-scale';
import { interpolateCividis, interpolatePuOr, interpolateRdBu, interpolateViridis } from 'd3-scale-chromatic';
import { color as d3color } from './color';

export type SequentialScheme = 'viridis' | 'cividis';
export type DivergingScheme = 'RdBu' | 'PuOr';

export const SEQUENTIAL: Record<SequentialScheme, (t: number) => string> = {
  viridis: interpolateViridis,
  cividis: interpolateCividis,
};

// Oriented so negative values are blue/purple and positive values red/orange.
export const DIVERGING: Record<DivergingScheme, (t: number) => string> = {
  RdBu: (t) => interpolateRdBu(1 - t),
  PuOr: (t) => interpolatePuOr(1 - t),
};

/** A colour scale as the renderer and the legend need it. */
export interface ColourScale {
  kind: 'sequential' | 'diverging';
  domain: [number, number];
  /** Interpolator over t in [0, 1]. */
  interpolate: (t: number) => string;
  /** Value -> t in [0, 1] (clamped). */
  t: (v: number) => number;
  /** Value -> CSS colour. */
  colour: (v: number) => string;
  /** Label under the legend, e.g. "share of counts". */
  label: string;
  /** Format for legend ticks. */
  tickFormat?: (v: number) => string;
}

export function sequentialScale(domain: [number, number], scheme: SequentialScheme, label: string): ColourScale {
  const [lo, hi] = domain[0] === domain[1] ? [domain[0], domain[0] + 1] : domain;
  const s = scaleSequential(SEQUENTIAL[scheme]).domain([lo, hi]).clamp(true);
  const lin = scaleLinear().domain([lo, hi]).range([0, 1]).clamp(true);
  return {
    kind: 'sequential',
    domain: [lo, hi],
    interpolate: SEQUENTIAL[scheme],
    t: (v) => lin(v),
    colour: (v) => s(v),
    label,
  };
}

/** A diverging scale centred on 0 with the symmetric domain [-m, m]. */
export function divergingScale(m: number, scheme: DivergingScheme, label: string): ColourScale {
  const mm = m > 0 && Number.isFinite(m) ? m : 1;
  const s = scaleDiverging(DIVERGING[scheme]).domain([-mm, 0, mm]).clamp(true);
  const lin = scaleLinear().domain([-mm, mm]).range([0, 1]).clamp(true);
  return {
    kind: 'diverging',
    domain: [-mm, mm],
    interpolate: DIVERGING[scheme],
    t: (v) => lin(v),
    colour: (v) => s(v),
    label,
  };
}

export const LUT_SIZE = 256;

/** RGBA lookup table of `n` colours sampled evenly along the scale's interpolator. */
export function colourLut(scale: ColourScale, n = LUT_SIZE): Uint8ClampedArray {
  const lut = new Uint8ClampedArray(n * 4);
  for (let i = 0; i < n; i++) {
    const c = d3color(scale.interpolate(i / (n - 1)));
    lut[i * 4] = c[0];
    lut[i * 4 + 1] = c[1];
    lut[i * 4 + 2] = c[2];
    lut[i * 4 + 3] = 255;
  }
  return lut;
}

/** LUT index of a value (the renderer's inner loop does this inline). */
export function lutIndex(scale: ColourScale, v: number, n = LUT_SIZE): number {
  return Math.round(scale.t(v) * (n - 1));
}

/** Okabe-Ito: distinguishable with every common colour-vision deficiency. One colour per run. */
export const RUN_PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#000000', '#F0E442'];

export function runColour(index: number): string {
  return RUN_PALETTE[((index % RUN_PALETTE.length) + RUN_PALETTE.length) % RUN_PALETTE.length];
}

/** Black or white text, whichever reads better on the given background. */
export function textOn(css: string): string {
  const [r, g, b] = d3color(css);
  const lum = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
  return lum > 0.5 ? '#000000' : '#ffffff';
}

/** Colour of missing cells, under a hatch. */
export const MISSING_FILL = '#eeeeee';
export const MISSING_HATCH = '#9e9e9e';
