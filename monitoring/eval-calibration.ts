/**
 * The calibration behind a served classifier's estimated metrics: the version's evaluation split (at most
 * {@link MAX_CALIBRATION_ROWS} rows of it, a seeded sample of a larger one) scored through the version's own ONNX graph
 * (the bytes serving runs, so what is fitted on is what gets logged), isotonic maps fitted on it (calibration.ts),
 * stored as a JSON artifact. Fitted once per split, graph and algorithm: each window's report carries the artifact's
 * address, and the metadata store records it under a key derived from those three (calibration-store.ts), so any
 * later window of the version finds it, with or without the previous window's report. The Evaluator keeps metrics,
 * not per-row predictions, so there is nothing of its to reuse.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import type { ActivityDeps } from '../activities/deps.js';
import { DomainError } from '../core/errors.js';
import { DataEngine } from '../data/engine.js';
import type { FittedTransform } from '../data/transform.js';
import { EvaluationError, scoreOnnxModel } from '../models/evaluate.js';
import { ArtifactNotFoundError, type ArtifactRef } from '../storage/artifact-store.js';
import { ArtifactIntegrityError } from '../storage/content-hash.js';
import {
  CALIBRATION_ALGORITHM,
  calibrationKey,
  readStoredCalibration,
  recordedCalibration,
  storeCalibration,
  type CalibrationRef,
  type CalibrationStoreDeps,
  type StoredCalibration,
} from './calibration-store.js';
import {
  applyCalibration,
  applyIsotonic,
  calibrateOnEval,
  type Calibration,
  type CalibrationFit,
} from './calibration.js';
import { estimateBinaryPerformance, estimateMulticlassPerformance } from './performance-estimate.js';

/** At most this many eval rows are scored and fitted on: a larger split gives a seeded sample of this many. */
export const MAX_CALIBRATION_ROWS = 200_000;
/** The sample's seed: fixed, so a split always gives the same rows. */
const SAMPLE_SEED = 1;

export type { CalibrationRef, StoredCalibration } from './calibration-store.js';

/** What fitting, storing and finding a calibration use. */
export type CalibrationDeps = CalibrationStoreDeps & Pick<ActivityDeps, 'scratchDir'>;

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
  /** Rows of the eval split: more than `evalRows` when the maps were fitted on a seeded sample of it. */
  readonly evalSplitRows?: number;
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

/** A calibration found (`reused`) or fitted now, or why none could be fitted this time (then nothing is stored). */
export type EvalCalibration =
  | { readonly stored: StoredCalibration; readonly ref: CalibrationRef; readonly reused: boolean }
  | { readonly failed: string };

/** Options of {@link evalCalibration}. */
export interface EvalCalibrationOptions {
  /** At most this many eval rows are fitted on (a seeded sample of a larger split). Default MAX_CALIBRATION_ROWS. */
  readonly maxRows?: number;
}

/**
 * The calibration of a version whose eval split and graph are `source`'s, fitted at most once per split, graph and
 * {@link CALIBRATION_ALGORITHM}: the artifact `cached` names, else the one recorded under its key (see
 * calibration-store.ts), else fitted now, stored and recorded under that key. A cached or recorded artifact that
 * cannot be read, parsed or trusted (missing, corrupt, of another algorithm) is logged and fitted again.
 *
 * A graph that cannot score the split (a non-retryable EvaluationError: a missing column, a bad label) is stored as a
 * skipped fit, so later windows do not try again. Any other failure of scoring or fitting (onnxruntime, DuckDB, a
 * bug), and an eval split or graph that fails its integrity check, gives `failed`, stored nowhere, so a later window
 * tries again. Idempotent and retriable: a retry finds what an earlier attempt stored, or stores the same.
 *
 * @param cached the calibration an earlier window of the same version used (from its report), if any.
 * @throws ArtifactNotFoundError when it must be fitted and the eval split or the graph no longer exists.
 * @throws a retryable DomainError (the eval file changed while it was read) and the stores' own failures (S3,
 *   Postgres), for the activity's retry policy.
 */
export async function evalCalibration(
  deps: CalibrationDeps,
  source: CalibrationSource,
  cached: CalibrationRef | undefined,
  options: EvalCalibrationOptions = {},
): Promise<EvalCalibration> {
  const maxRows = options.maxRows ?? MAX_CALIBRATION_ROWS;
  const expected = { eval: source.eval.uri, model: source.model.sha256 };
  if (cached && cached.eval === expected.eval && cached.model === expected.model) {
    const stored = await readStoredCalibration(deps, cached, expected);
    if (stored) return { stored, ref: cached, reused: true };
  }
  const key = calibrationKey(source.eval.sha256, source.model.sha256, maxRows);
  const recorded = await recordedCalibration(deps, key);
  if (recorded && recorded.uri !== cached?.uri) {
    const stored = await readStoredCalibration(deps, recorded, expected);
    if (stored) return { stored, ref: recorded, reused: true };
  }
  const fit = await fitOrFail(deps, source, maxRows);
  if ('failed' in fit) return fit;
  const stored: StoredCalibration = { version: CALIBRATION_ALGORITHM, ...expected, ...fit };
  return { stored, ref: await storeCalibration(deps, key, stored), reused: false };
}

/** Fits the calibration of `source`, or says why it cannot now; see {@link evalCalibration} for which is which. */
async function fitOrFail(
  deps: CalibrationDeps,
  source: CalibrationSource,
  maxRows: number,
): Promise<(CalibrationFit & { splitRows?: number }) | { failed: string }> {
  const failed = (error: unknown, what: string) => {
    const context = { eval: source.eval.uri, model: source.model.sha256, err: error };
    deps.logger.warn(context, `${what}: the window's estimates go uncalibrated`);
    return { failed: `${what}: ${error instanceof Error ? error.message : String(error)}` };
  };
  let file: string;
  let onnx: Buffer;
  try {
    [file, onnx] = await Promise.all([
      deps.artifacts.materialize(source.eval, path.join(deps.scratchDir, 'artifacts')),
      deps.artifacts.get(source.model),
    ]);
  } catch (error) {
    if (error instanceof ArtifactIntegrityError) return failed(error, 'the eval split or the model is corrupt');
    throw error;
  }
  try {
    return await fitOnSplit(deps, source.transform, file, onnx, maxRows);
  } catch (error) {
    if (error instanceof DomainError && error.retryable) throw error;
    if (error instanceof EvaluationError)
      return { rows: 0, skipped: `the model could not score its eval split: ${error.message}` };
    return failed(error, 'the calibration could not be fitted');
  }
}

/**
 * Scores the eval file (a seeded sample of `maxRows` when it has more) through the graph and fits the calibration on
 * it. Read-only; works in a folder under `deps.scratchDir`, removed afterwards.
 *
 * @throws EvaluationError when the graph cannot score the split (see models/evaluate.ts).
 */
async function fitOnSplit(
  deps: Pick<CalibrationDeps, 'scratchDir'>,
  transform: FittedTransform,
  file: string,
  onnx: Uint8Array,
  maxRows: number,
): Promise<CalibrationFit & { splitRows: number }> {
  await mkdir(deps.scratchDir, { recursive: true });
  const workDir = await mkdtemp(path.join(deps.scratchDir, 'eval-calibration-'));
  try {
    const engine = await DataEngine.open({ workDir, readableDirs: [path.dirname(file)] });
    try {
      const sample = { rows: maxRows, seed: SAMPLE_SEED };
      const scored = await scoreOnnxModel({ onnx, evalPath: file, transform, engine, sample });
      const fit = calibrateOnEval(scored.outputs, scored.labels, scored.classCount, scored.task === 'binary');
      return { ...fit, splitRows: scored.fileRows };
    } finally {
      engine.close();
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
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
  deps: CalibrationDeps,
  input: Partial<Pick<CalibrationSource, 'eval' | 'transform'>> &
    EvalCalibrationOptions & {
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
  let fitted: EvalCalibration;
  try {
    const options = input.maxRows !== undefined ? { maxRows: input.maxRows } : {};
    fitted = await evalCalibration(deps, { eval: evalSplit, transform, model }, input.cached, options);
  } catch (error) {
    if (!(error instanceof ArtifactNotFoundError)) throw error;
    return uncalibrated(`the eval split or the model no longer exists (${error.message})`);
  }
  if ('failed' in fitted) return uncalibrated(fitted.failed);
  const { stored, ref, reused } = fitted;
  if (!reused) notes.push(`calibrated on the eval split: ${ref.uri}`);
  const described = {
    artifact: ref,
    evalRows: stored.rows,
    ...(stored.splitRows !== undefined ? { evalSplitRows: stored.splitRows } : {}),
    ...(stored.ece ? { ece: stored.ece } : {}),
  };
  const calibration = stored.calibration;
  if (!calibration) return uncalibrated(stored.skipped ?? 'no calibration was fitted', described);
  if (calibration.classCount !== input.classCount || (calibration.maps.length === 1) !== input.binary)
    return uncalibrated(
      `fitted for ${calibration.classCount} classes, the window logs ${input.classCount} probabilities a row`,
      described,
    );
  const ece = stored.ece?.after !== undefined ? ` (ECE ${fixed(stored.ece.before)} → ${fixed(stored.ece.after)})` : '';
  const sample =
    stored.splitRows !== undefined && stored.splitRows > stored.rows
      ? ` (a seeded sample of the split's ${stored.splitRows})`
      : '';
  notes.push(
    `estimates read the probabilities calibrated on ${stored.rows} eval rows${sample} by isotonic regression${ece}`,
  );
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
