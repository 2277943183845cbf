/**
 * A small seeded pseudo-random generator (SplitMix32 on 32-bit integers): training must be reproducible from a seed,
 * and Math.random cannot be seeded.
 */

/** A deterministic stream of uniform numbers. */
export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number {
    this.state = (this.state + 0x9e3779b9) | 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  }

  /** Uniform integer in [0, n), n ≤ 2^32; rejection sampling keeps it unbiased. */
  nextInt(n: number): number {
    const limit = 0x100000000 - (0x100000000 % n);
    for (;;) {
      const x = this.nextUint32();
      if (x < limit) return x % n;
    }
  }
}

/**
 * Chooses `k` distinct indexes of [0, n) (partial Fisher–Yates) and returns them sorted ascending, so that the
 * callers' passes over the chosen rows read memory in order.
 */
export function sampleWithoutReplacement(n: number, k: number, random: SeededRandom): Uint32Array {
  const pool = new Uint32Array(n);
  for (let i = 0; i < n; i++) pool[i] = i;
  for (let i = 0; i < k; i++) {
    const j = i + random.nextInt(n - i);
    const t = pool[i]!;
    pool[i] = pool[j]!;
    pool[j] = t;
  }
  return pool.slice(0, k).sort();
}
