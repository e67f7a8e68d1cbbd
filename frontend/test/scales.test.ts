import { interpolateViridis } from 'd3-scale-chromatic';
import { describe, expect, it } from 'vitest';
import { color } from '../src/color';
import { RUN_PALETTE, colourLut, divergingScale, lutIndex, runColour, sequentialScale, textOn } from '../src/scales';

describe('scales', () => {
  it('sequential viridis maps the domain ends to the scheme ends and clamps', () => {
    const s = sequentialScale([0, 1], 'viridis', 'share');
    expect(s.colour(0)).toBe(interpolateViridis(0));
    expect(s.colour(1)).toBe(interpolateViridis(1));
    expect(s.colour(2)).toBe(interpolateViridis(1));
    expect(s.t(0.25)).toBe(0.25);
    expect(s.kind).toBe('sequential');
  });

  it('a degenerate domain still gives a usable scale', () => {
    const s = sequentialScale([3, 3], 'cividis', 'x');
    expect(s.domain).toEqual([3, 4]);
    expect(Number.isFinite(s.t(3))).toBe(true);
  });

  it('diverging is symmetric around zero: negative blue, zero neutral, positive red', () => {
    const s = divergingScale(4, 'RdBu', 'diff');
    expect(s.domain).toEqual([-4, 4]);
    expect(s.t(0)).toBe(0.5);
    const [r0, , b0] = color(s.colour(-4));
    const [r1, , b1] = color(s.colour(4));
    expect(b0).toBeGreaterThan(r0);
    expect(r1).toBeGreaterThan(b1);
    const [r, g, b] = color(s.colour(0));
    expect(Math.min(r, g, b)).toBeGreaterThan(230); // near white
    expect(divergingScale(0, 'PuOr', 'x').domain).toEqual([-1, 1]);
    expect(divergingScale(NaN, 'PuOr', 'x').domain).toEqual([-1, 1]);
  });

  it('the LUT samples the interpolator: first and last entries are the scheme ends', () => {
    const s = sequentialScale([0, 1], 'viridis', 'share');
    const lut = colourLut(s, 256);
    expect(Array.from(lut.slice(0, 4))).toEqual([...color(interpolateViridis(0)), 255]);
    expect(Array.from(lut.slice(255 * 4, 256 * 4))).toEqual([...color(interpolateViridis(1)), 255]);
    expect(lutIndex(s, 0.5)).toBe(128);
    expect(lutIndex(s, -1)).toBe(0);
  });

  it('runs get distinct colour-blind-safe colours, wrapping after eight', () => {
    expect(new Set(RUN_PALETTE).size).toBe(8);
    expect(runColour(0)).toBe(RUN_PALETTE[0]);
    expect(runColour(8)).toBe(RUN_PALETTE[0]);
    expect(runColour(-1)).toBe(RUN_PALETTE[7]);
  });

  it('text colour contrasts with the cell', () => {
    expect(textOn(interpolateViridis(0))).toBe('#ffffff');
    expect(textOn(interpolateViridis(1))).toBe('#000000');
  });

  it('parses the colour strings d3 produces', () => {
    expect(color('#ff8000')).toEqual([255, 128, 0]);
    expect(color('#f80')).toEqual([255, 136, 0]);
    expect(color('rgb(1, 2, 3)')).toEqual([1, 2, 3]);
  });
});
