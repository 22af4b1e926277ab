// Philox4x32-10 and the seeded Rng: pinned bit-exact values, deterministic log/cos/sin, distributions, fork and split.
import { describe, expect, it } from 'vitest';
import { detCosSin2Pi, detLog, philox4x32, Rng } from './rng.js';

const hex = (a: Uint32Array) => [...a].map((v) => v.toString(16).padStart(8, '0')).join(' ');

describe('Philox4x32-10', () => {
  it("matches Random123's known-answer vectors", () => {
    expect(hex(philox4x32([0, 0, 0, 0], [0, 0]))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8');
    const f = 0xffffffff;
    expect(hex(philox4x32([f, f, f, f], [f, f]))).toBe('408f276d 41c83b0e a20bc7c6 6d5451fd');
    expect(hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]))).toBe('d16cfe09 94fdcceb 5001e420 24126ea1');
  });
});

describe('deterministic elementary functions', () => {
  it('log agrees with Math.log to about an ulp, over (0, 1] and beyond', () => {
    const r = new Rng(1);
    let worst = 0;
    for (let i = 0; i < 20000; i++) {
      const x = i < 10000 ? 1 - r.next() : Math.exp(r.uniform(-700, 700));
      worst = Math.max(worst, Math.abs(detLog(x) - Math.log(x)) / Math.max(1, Math.abs(Math.log(x))));
    }
    expect(worst).toBeLessThanOrEqual(2.5e-16);
    expect(detLog(1)).toBe(0);
    expect(detLog(2 ** -53)).toBeCloseTo(-53 * Math.LN2, 13);
    expect(detLog(5e-324)).toBeCloseTo(Math.log(5e-324), 12);
    expect(detLog(0)).toBe(-Infinity);
    expect(detLog(-1)).toBeNaN();
  });
  it('cos/sin of 2πv agree with Math to 1e-15', () => {
    const r = new Rng(2);
    let worst = 0;
    for (let i = 0; i < 20000; i++) {
      const v = i < 8 ? i / 8 : r.next();
      const [c, s] = detCosSin2Pi(v);
      worst = Math.max(worst, Math.abs(c - Math.cos(2 * Math.PI * v)), Math.abs(s - Math.sin(2 * Math.PI * v)));
    }
    expect(worst).toBeLessThan(1e-15);
    expect(detCosSin2Pi(0)).toEqual([1, 0]);
  });
});

describe('Rng', () => {
  it('gives the same numbers on every machine (pinned bit-exact values)', () => {
    const r = new Rng(0);
    expect(r.normal()).toBe(-0.09047304870320483);
    expect(r.normal()).toBe(-1.0051318183691345);
    expect(r.next()).toBe(0.9722412032044762);
    expect(r.int(0, 1000)).toBe(603);
    expect(r.uint32()).toBe(159317863);
  });
  it('is reproducible and seed-dependent', () => {
    const a = new Rng(42).normals(1000);
    expect(new Rng(42).normals(1000)).toEqual(a);
    expect(new Rng(43).normals(1000)).not.toEqual(a);
    expect(new Rng(2 ** 40).next()).not.toBe(new Rng(0).next()); // high seed bits are part of the key
  });
  it('refuses seeds that are not whole numbers >= 0', () => {
    for (const s of [-1, 1.5, NaN, 2 ** 53]) expect(() => new Rng(s)).toThrow(RangeError);
  });
  it('uniform floats lie in [0, 1) with mean 1/2; ints cover their range evenly', () => {
    const r = new Rng(7);
    const u = Array.from({ length: 100000 }, () => r.next());
    expect(u.every((v) => v >= 0 && v < 1)).toBe(true);
    expect(u.reduce((a, b) => a + b, 0) / u.length).toBeCloseTo(0.5, 2);
    const counts = new Array(1000).fill(0);
    for (let i = 0; i < 200000; i++) counts[r.int(0, 1000)]++;
    expect(Math.min(...counts)).toBeGreaterThan(130); // expected 200 each
    expect(Math.max(...counts)).toBeLessThan(270);
    expect(r.int(5, 6)).toBe(5);
    expect(() => r.int(3, 3)).toThrow(RangeError);
  });
});

describe('Rng: distributions, forks, splits, shuffles', () => {
  it('normals have mean 0, variance 1 and normal tails', () => {
    const a = new Rng(3).fillNormal(new Float64Array(200000));
    const mean = a.reduce((s, v) => s + v, 0) / a.length;
    const variance = a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length;
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(variance - 1)).toBeLessThan(0.01);
    const beyond2 = a.filter((v) => Math.abs(v) > 2).length / a.length;
    expect(beyond2).toBeCloseTo(0.0455, 2);
  });
  it('fork(label) depends on the key and label only, not on draws made', () => {
    const r = new Rng(5);
    const before = r.fork('noise').normals(4);
    r.normals(17);
    expect(r.fork('noise').normals(4)).toEqual(before);
    expect(r.fork('noise2').normals(4)).not.toEqual(before);
    expect(r.fork('').next()).not.toBe(r.fork('\u0000').next());
    expect(new Rng(6).fork('noise').normals(4)).not.toEqual(before);
    expect(r.fork('a').fork('b').next()).not.toBe(r.fork('b').fork('a').next());
  });
  it('split() gives a new independent child each call, reproducibly', () => {
    const r1 = new Rng(9);
    const r2 = new Rng(9);
    const c1 = [r1.split().next(), r1.split().next()];
    r2.next(); // draws do not move the split counter
    expect([r2.split().next(), r2.split().next()]).toEqual(c1);
    expect(c1[0]).not.toBe(c1[1]);
  });
  it('shuffle returns a permutation, reproducibly', () => {
    const a = new Rng(11).shuffle([...Array(50).keys()]);
    expect([...a].sort((x, y) => x - y)).toEqual([...Array(50).keys()]);
    expect(new Rng(11).shuffle([...Array(50).keys()])).toEqual(a);
    expect(a).not.toEqual([...Array(50).keys()]);
  });
});
