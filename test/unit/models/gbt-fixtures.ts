/** Small datasets for the gradient-boosted trees tests, built from a seeded generator so every run sees the same rows. */
import { SeededRandom } from '../../../models/trainers/gbt/random.js';
import type { TreeDataset, TreeFeature } from '../../../models/types.js';

export function numeric(name: string, values: readonly number[]): TreeFeature {
  return { kind: 'numeric', name, values: Float32Array.from(values) };
}

export function categorical(name: string, codes: readonly number[], cardinality: number): TreeFeature {
  return { kind: 'categorical', name, codes: Int32Array.from(codes), cardinality };
}

export function dataset(
  features: readonly TreeFeature[],
  y: readonly number[],
  weights?: readonly number[],
): TreeDataset {
  return {
    rows: y.length,
    features,
    y: Float64Array.from(y),
    ...(weights ? { weights: Float64Array.from(weights) } : {}),
  };
}

/** Uniform float32 numbers in [0, 1) from a seed. */
export function uniform(n: number, seed: number): number[] {
  const random = new SeededRandom(seed);
  // float32 values, so that a label computed from them agrees with the float32 feature the trees see.
  return Array.from({ length: n }, () => Math.fround(random.nextUint32() / 2 ** 32));
}

/** Integers in [0, k) from a seed. */
export function integers(n: number, k: number, seed: number): number[] {
  const random = new SeededRandom(seed);
  return Array.from({ length: n }, () => random.nextInt(k));
}

/** A noisy binary problem on one numeric and one categorical feature (for determinism, resume and stopping). */
export function noisyBinary(n: number, seed: number): TreeDataset {
  const x = uniform(n, seed);
  const c = integers(n, 12, seed + 1);
  const noise = uniform(n, seed + 2);
  const y = x.map((v, i) => {
    const p = 0.2 + 0.5 * v + (c[i]! % 3 === 0 ? 0.2 : 0);
    return noise[i]! < p ? 1 : 0;
  });
  return dataset([numeric('x', x), categorical('c', c, 13)], y);
}
