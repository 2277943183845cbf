/**
 * The calibration behind a served classifier's estimated metrics: the version's evaluation split scored once through
 * the version's own ONNX graph (the bytes serving runs, so what is fitted on is what gets logged), isotonic maps
 * fitted on it (calibration.ts), stored as a JSON artifact. Each window's report carries its address, so the next
 * window of the same version reads it instead of scoring the split again (as training-baseline.ts does for the train
 * split). The Evaluator keeps metrics, not per-row predictions, so there is nothing of its to reuse.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import type { ActivityDeps } from '../activities/deps.js';
import { DataEngine } from '../data/engine.js';
import type { FittedTransform } from '../data/transform.js';
import { EvaluationError, scoreOnnxModel } from '../models/evaluate.js';
import { ArtifactNotFoundError, type ArtifactRef } from '../storage/artifact-store.js';
import {
  applyCalibration,
  applyIsotonic,
  calibrateOnEval,
  type Calibration,
  type CalibrationFit,
} from './calibration.js';
import { estimateBinaryPerformance, estimateMulticlassPerformance } from './performance-estimate.js';

/** Where a report keeps the calibration: the artifact, and the eval split and graph it was fitted from. */
export interface CalibrationRef {
  readonly uri: string;
  readonly sha256: string;
  /** The URI of the eval split. */
  readonly eval: string;
  /** The sha256 of the ONNX graph that scored it. */
  readonly model: string;
}

/** The artifact: the fit (or why there is none) and what it came from. */
export interface StoredCalibration extends CalibrationFit {
  readonly version: 1;
  readonly eval: string;
  readonly model: string;
}

/** What a calibration is fitted from. */
export interface CalibrationSource {
  /** The prepared eval split (Transform's `eval` output). */
  readonly eval: ArtifactRef;
  /** The version's ONNX graph, as the registry records it. */
  readonly model: { readonly uri: string; readonly sha256: string };
  readonly transform: FittedTransform;
}

/** What a window's report says about the probabilities its estimates read. */
export interface CalibrationReport {
  /** The estimates read calibrated probabilities (true), or the logged ones at face value. */
  readonly calibrated: boolean;
  readonly artifact?: CalibrationRef;
  /** Eval rows the maps were fitted on. */
  readonly evalRows?: number;
  /** Expected calibration error on the eval split, before and after (out of fold); see CalibrationFit. */
  readonly ece?: CalibrationFit['ece'];
  /** Why the estimates are not calibrated. */
  readonly reason?: string;
}

export interface WindowCalibration {
  /** Present when the estimates are to be calibrated. */
  readonly calibration?: Calibration;
  readonly report: CalibrationReport;
}

/**
 * Scores `source.eval` through `source.model` and fits the calibration on it. Read-only; works in a folder under
 * `deps.scratchDir`, removed afterwards.
 *
 * @throws ArtifactNotFoundError when the eval split or the graph no longer exists.
 * @throws EvaluationError when the graph cannot score the split (see models/evaluate.ts).
 */
export async function fitEvalCalibration(
  deps: Pick<ActivityDeps, 'artifacts' | 'scratchDir'>,
  source: CalibrationSource,
): Promise<CalibrationFit> {
  const [file, onnx] = await Promise.all([
    deps.artifacts.materialize(source.eval, path.join(deps.scratchDir, 'artifacts')),
    deps.artifacts.get(source.model),
  ]);
  await mkdir(deps.scratchDir, { recursive: true });
  const workDir = await mkdtemp(path.join(deps.scratchDir, 'eval-calibration-'));
  try {
    const engine = await DataEngine.open({ workDir, readableDirs: [path.dirname(file)] });
    try {
      const scored = await scoreOnnxModel({ onnx, evalPath: file, transform: source.transform, engine });
      return calibrateOnEval(scored.outputs, scored.labels, scored.classCount, scored.task === 'binary');
    } finally {
      engine.close();
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

/**
 * The calibration of a version whose eval split and graph are `source`'s: the artifact `cached` names when it was
 * fitted from that same split and graph and still exists, else fitted now and stored (content-addressed, so fitting
 * it twice stores one object). A graph that cannot score the split is stored as a skipped fit, so the next window
 * does not try again. Idempotent and retriable.
 *
 * @param cached the calibration an earlier window of the same version used (from its report), if any.
 * @throws ArtifactNotFoundError when it must be fitted and the eval split or the graph no longer exists.
 */
export async function evalCalibration(
  deps: Pick<ActivityDeps, 'artifacts' | 'scratchDir'>,
  source: CalibrationSource,
  cached: CalibrationRef | undefined,
): Promise<{ stored: StoredCalibration; ref: CalibrationRef; reused: boolean }> {
  if (cached && cached.eval === source.eval.uri && cached.model === source.model.sha256) {
    try {
      const stored = JSON.parse((await deps.artifacts.get(cached)).toString('utf8')) as StoredCalibration;
      return { stored, ref: cached, reused: true };
    } catch (error) {
      if (!(error instanceof ArtifactNotFoundError)) throw error;
    }
  }
  let fit: CalibrationFit;
  try {
    fit = await fitEvalCalibration(deps, source);
  } catch (error) {
    if (!(error instanceof EvaluationError)) throw error;
    fit = { rows: 0, skipped: `the model could not score its eval split: ${error.message}` };
  }
  const stored: StoredCalibration = { version: 1, eval: source.eval.uri, model: source.model.sha256, ...fit };
  const ref = await deps.artifacts.put(`${JSON.stringify(stored)}\n`, {
    kind: 'calibration.json',
    contentType: 'application/json',
  });
  return {
    stored,
    ref: { uri: ref.uri, sha256: ref.sha256, eval: source.eval.uri, model: source.model.sha256 },
    reused: false,
  };
}

const fixed = (x: number) => x.toFixed(4);

/**
 * The calibration a window's estimates use (see {@link evalCalibration}) and what its report says about it; notes
 * why when the estimates read the logged probabilities at face value instead.
 *
 * @param input the version's eval split, transform (either absent when its run recorded none) and graph; the
 *   window's class count, whether P(class 1) decides at a threshold (`binary`), and the calibration an earlier window
 *   of the same version used.
 */
export async function windowCalibration(
  deps: Pick<ActivityDeps, 'artifacts' | 'scratchDir'>,
  input: Partial<Pick<CalibrationSource, 'eval' | 'transform'>> & {
    readonly model: CalibrationSource['model'];
    readonly classCount: number;
    readonly binary: boolean;
    readonly cached: CalibrationRef | undefined;
  },
  notes: string[],
): Promise<WindowCalibration> {
  const uncalibrated = (reason: string, rest: Omit<CalibrationReport, 'calibrated' | 'reason'> = {}) => {
    notes.push(`estimates take the logged probabilities as calibrated: ${reason}`);
    return { report: { calibrated: false, ...rest, reason } };
  };
  const { eval: evalSplit, transform, model } = input;
  if (!evalSplit || !transform) return uncalibrated('the training run recorded no eval split to calibrate on');
  let fitted: Awaited<ReturnType<typeof evalCalibration>>;
  try {
    fitted = await evalCalibration(deps, { eval: evalSplit, transform, model }, input.cached);
  } catch (error) {
    if (!(error instanceof ArtifactNotFoundError)) throw error;
    return uncalibrated(`the eval split or the model no longer exists (${error.message})`);
  }
  const { stored, ref, reused } = fitted;
  if (!reused) notes.push(`calibrated on the eval split: ${ref.uri}`);
  const described = { artifact: ref, evalRows: stored.rows, ...(stored.ece ? { ece: stored.ece } : {}) };
  const calibration = stored.calibration;
  if (!calibration) return uncalibrated(stored.skipped ?? 'no calibration was fitted', described);
  if (calibration.classCount !== input.classCount || (calibration.maps.length === 1) !== input.binary)
    return uncalibrated(
      `fitted for ${calibration.classCount} classes, the window logs ${input.classCount} probabilities a row`,
      described,
    );
  const ece = stored.ece?.after !== undefined ? ` (ECE ${fixed(stored.ece.before)} → ${fixed(stored.ece.after)})` : '';
  notes.push(`estimates read the probabilities calibrated on ${stored.rows} eval rows by isotonic regression${ece}`);
  return { calibration, report: { calibrated: true, ...described } };
}

/**
 * Estimated metrics of a classifier's rows, laid out as the window scan keeps them (binary: P(class 1) per row;
 * multiclass: rows × classCount, row-major). With a calibration, the model's own probabilities decide and rank while
 * the calibrated ones give the chance it is right; without, the probabilities as they are. Empty for no rows.
 */
export function estimatePerformance(
  probabilities: Float64Array,
  classCount: number,
  binary: boolean,
  threshold: number,
  calibration: Calibration | undefined,
): Record<string, number> {
  if (binary) {
    const map = calibration?.maps[0];
    const p = map ? probabilities.map((score) => applyIsotonic(map, score)) : probabilities;
    return estimateBinaryPerformance(p, threshold, probabilities);
  }
  const calibrated = calibration ? applyCalibration(calibration, probabilities) : probabilities;
  return estimateMulticlassPerformance(calibrated, classCount, probabilities);
}
