/**
 * Logistic objectives: loss and gradient in one pass over the distinct rows (distinct-rows.ts). θ = [W feature-major
 * (θ[j·K + k]), intercepts (K)]. Rows skip zeros in both layouts, in ascending column order, so dense and sparse
 * inputs give the same sums bit for bit.
 */
import type { Objective } from '../../optim/lbfgs.js';
import type { WeightedRows } from './distinct-rows.js';

/** Rows are summed in blocks of this many, then the blocks: less rounding error than one running sum. */
const BLOCK = 1024;

/** What the summed loss and the squared norm of W are multiplied by (the objective divided by C·Σcᵢ). */
export interface Scale {
  /** 1 / Σcᵢ. */
  readonly data: number;
  /** 1 / (C·Σcᵢ). */
  readonly penalty: number;
}

/**
 * Binary log loss, K = 1: f = (1/Σc)·Σᵤ [Wᵤ·log(1 + e^zᵤ) − W⁺ᵤ·zᵤ] + ‖w‖²/(2CΣc), zᵤ = xᵤ·w + b, over distinct rows
 * u with total weight Wᵤ and weight W⁺ᵤ on label 1 (= Σ over the copies of cᵢ·[log(1 + e^zᵢ) − yᵢzᵢ]).
 */
export function binaryObjective(rows: WeightedRows, fitIntercept: boolean, scale: Scale): Objective {
  const { design, total } = rows;
  const { cols } = design;
  const count = design.rows;
  const positive = new Float64Array(count);
  for (let u = 0; u < count; u++) {
    for (let k = rows.labelStart[u]!; k < rows.labelStart[u + 1]!; k++) {
      if (rows.labels[k] === 1) positive[u] = rows.labelWeights[k]!;
    }
  }
  // One loop per layout, typed arrays in locals: the hot loop sees monomorphic, hoistable loads.
  const indptr = design.kind === 'sparse' ? design.indptr : new Int32Array(0);
  const indices = design.kind === 'sparse' ? design.indices : new Int32Array(0);
  const values = design.kind === 'sparse' ? design.values : new Float64Array(0);
  const dense = design.kind === 'dense' ? design.data : new Float64Array(0);
  const sparse = design.kind === 'sparse';
  return (theta, grad) => {
    grad.fill(0);
    const b = fitIntercept ? theta[cols]! : 0;
    let loss = 0;
    let block = 0;
    let gb = 0;
    for (let u = 0; u < count; u++) {
      let z = b;
      const start = sparse ? indptr[u]! : u * cols;
      const end = sparse ? indptr[u + 1]! : start + cols;
      if (sparse) {
        for (let k = start; k < end; k++) z += values[k]! * theta[indices[k]!]!;
      } else {
        for (let k = start; k < end; k++) {
          const v = dense[k]!;
          if (v !== 0) z += v * theta[k - start]!;
        }
      }
      const weight = total[u]!;
      const weightPositive = positive[u]!;
      // softplus(z) = log(1 + e^z) and p = sigmoid(z), from one exp of −|z|.
      let softplus: number;
      let p: number;
      if (z >= 0) {
        const e = Math.exp(-z);
        softplus = z + Math.log1p(e);
        p = 1 / (1 + e);
      } else {
        const e = Math.exp(z);
        softplus = Math.log1p(e);
        p = e / (1 + e);
      }
      block += weight * softplus - weightPositive * z;
      if ((u & (BLOCK - 1)) === BLOCK - 1) {
        loss += block;
        block = 0;
      }
      const residual = weight * p - weightPositive;
      gb += residual;
      if (sparse) {
        for (let k = start; k < end; k++) grad[indices[k]!]! += residual * values[k]!;
      } else {
        for (let k = start; k < end; k++) {
          const v = dense[k]!;
          if (v !== 0) grad[k - start]! += residual * v;
        }
      }
    }
    loss += block;
    let penalty = 0;
    for (let j = 0; j < cols; j++) {
      const w = theta[j]!;
      penalty += w * w;
      grad[j] = grad[j]! * scale.data + w * scale.penalty;
    }
    if (fitIntercept) grad[cols] = gb * scale.data;
    return loss * scale.data + 0.5 * penalty * scale.penalty;
  };
}

/**
 * Multinomial log loss over K outputs: per distinct row, Wᵤ·logΣₖe^{zᵤₖ} − Σ_labels w·zᵤ,label (= Σ over the copies
 * of cᵢ·[logΣₖe^{zᵢₖ} − zᵢ,yᵢ]); penalty ‖W‖²/(2CΣc) over every output's weights.
 */
export function softmaxObjective(rows: WeightedRows, outputs: number, fitIntercept: boolean, scale: Scale): Objective {
  const { design, total, labelStart, labels, labelWeights } = rows;
  const { cols } = design;
  const count = design.rows;
  const K = outputs;
  const z = new Float64Array(K);
  const bias = cols * K;
  const sparse = design.kind === 'sparse' ? design : null;
  const dense = design.kind === 'dense' ? design.data : null;
  return (theta, grad) => {
    grad.fill(0);
    let loss = 0;
    let block = 0;
    for (let u = 0; u < count; u++) {
      for (let k = 0; k < K; k++) z[k] = fitIntercept ? theta[bias + k]! : 0;
      if (sparse) {
        const { indptr, indices, values } = sparse;
        const end = indptr[u + 1]!;
        for (let p = indptr[u]!; p < end; p++) {
          const v = values[p]!;
          const base = indices[p]! * K;
          for (let k = 0; k < K; k++) z[k] = z[k]! + v * theta[base + k]!;
        }
      } else {
        const row = u * cols;
        for (let j = 0; j < cols; j++) {
          const v = dense![row + j]!;
          if (v === 0) continue;
          const base = j * K;
          for (let k = 0; k < K; k++) z[k] = z[k]! + v * theta[base + k]!;
        }
      }
      let max = z[0]!;
      for (let k = 1; k < K; k++) if (z[k]! > max) max = z[k]!;
      const weight = total[u]!;
      // Σ w·(z_label − max) before z is overwritten.
      let labelled = 0;
      for (let p = labelStart[u]!; p < labelStart[u + 1]!; p++) labelled += labelWeights[p]! * (z[labels[p]!]! - max);
      let sum = 0;
      for (let k = 0; k < K; k++) {
        const e = Math.exp(z[k]! - max);
        z[k] = e;
        sum += e;
      }
      block += weight * Math.log(sum) - labelled;
      if ((u & (BLOCK - 1)) === BLOCK - 1) {
        loss += block;
        block = 0;
      }
      // Residuals Wᵤ·pₖ − w(label k) into z.
      const scaled = weight / sum;
      for (let k = 0; k < K; k++) z[k] = z[k]! * scaled;
      for (let p = labelStart[u]!; p < labelStart[u + 1]!; p++) z[labels[p]!] = z[labels[p]!]! - labelWeights[p]!;
      if (sparse) {
        const { indptr, indices, values } = sparse;
        const end = indptr[u + 1]!;
        for (let p = indptr[u]!; p < end; p++) {
          const v = values[p]!;
          const base = indices[p]! * K;
          for (let k = 0; k < K; k++) grad[base + k]! += z[k]! * v;
        }
      } else {
        const row = u * cols;
        for (let j = 0; j < cols; j++) {
          const v = dense![row + j]!;
          if (v === 0) continue;
          const base = j * K;
          for (let k = 0; k < K; k++) grad[base + k]! += z[k]! * v;
        }
      }
      if (fitIntercept) for (let k = 0; k < K; k++) grad[bias + k]! += z[k]!;
    }
    loss += block;
    let penalty = 0;
    for (let i = 0; i < bias; i++) {
      const w = theta[i]!;
      penalty += w * w;
      grad[i] = grad[i]! * scale.data + w * scale.penalty;
    }
    if (fitIntercept) for (let k = 0; k < K; k++) grad[bias + k] = grad[bias + k]! * scale.data;
    return loss * scale.data + 0.5 * penalty * scale.penalty;
  };
}
