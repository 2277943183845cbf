/**
 * The MLP's seeded randomness: mulberry32 streams, one per use (validation split, initialization, shuffling), so that
 * resuming needs only the shuffle stream's state.
 */

/**
 * mulberry32: a 32-bit-state generator, plenty for shuffling and initialization, and its whole state is one integer
 * that a checkpoint can hold.
 */
export class Mulberry32 {
  constructor(public state: number) {
    this.state = state >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

/** Independent streams per use, so that resuming needs only the shuffle stream's state. */
export const Stream = { Split: 1, Init: 2, Shuffle: 3 } as const;
export type Stream = (typeof Stream)[keyof typeof Stream];

export function streamRng(seed: number, stream: Stream): Mulberry32 {
  const rng = new Mulberry32((seed ^ Math.imul(stream, 0x9e3779b9)) >>> 0);
  // Nearby seeds start nearby; a few draws decorrelate the streams.
  for (let i = 0; i < 4; i++) rng.next();
  return rng;
}

export function shuffleInPlace(values: Int32Array, rng: Mulberry32): void {
  for (let i = values.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    const tmp = values[i]!;
    values[i] = values[j]!;
    values[j] = tmp;
  }
}
