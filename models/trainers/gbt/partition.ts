/**
 * Stable partition of a node's row indexes by a split (a 256-entry table: 1 when a bin goes left). Left/right is
 * unpredictable from row to row, so both kernels are branch-free: each row is written to both sides and only the side
 * it belongs to advances (a mispredicted branch per row would cost more than the extra store).
 */

/** Partitions indices[start, end) in place through `scratch`; returns where the right part starts. */
export function partitionInPlace(
  indices: Uint32Array,
  scratch: Uint32Array,
  bins: Uint8Array,
  features: number,
  feature: number,
  table: Uint8Array,
  start: number,
  end: number,
): number {
  let l = start;
  let r = 0;
  // Writing indices[l] with l ≤ i only overwrites entries already read.
  for (let i = start; i < end; i++) {
    const row = indices[i]!;
    const left = table[bins[row * features + feature]!]!;
    indices[l] = row;
    scratch[r] = row;
    l += left;
    r += 1 - left;
  }
  indices.set(scratch.subarray(0, r), l);
  return l;
}

/**
 * One chunk of a parallel partition: the left rows of indices[start, end) go to left[start, start + count), the right
 * ones to right[start, ...), in order. Returns the left count; the caller concatenates the chunks.
 */
export function partitionChunk(
  indices: Uint32Array,
  left: Uint32Array,
  right: Uint32Array,
  bins: Uint8Array,
  features: number,
  feature: number,
  table: Uint8Array,
  start: number,
  end: number,
): number {
  let l = start;
  let r = start;
  for (let i = start; i < end; i++) {
    const row = indices[i]!;
    const goesLeft = table[bins[row * features + feature]!]!;
    left[l] = row;
    right[r] = row;
    l += goesLeft;
    r += 1 - goesLeft;
  }
  return l - start;
}
