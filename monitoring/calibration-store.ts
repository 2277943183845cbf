/**
 * Where an eval-split calibration (eval-calibration.ts) is kept and found: a JSON artifact, content-addressed, and a
 * metadata execution whose external id is a key derived from what the fit depends on ({@link calibrationKey}) and
 * whose result is the artifact's address. The artifact store has no names, only content addresses, so the key lives
 * where the platform already finds earlier work by its inputs: the metadata store.
 */
import type { ActivityDeps } from '../activities/deps.js';
import type { CalibrationFit } from './calibration.js';

/**
 * How a calibration is fitted (the sample, the maps, the artifact's layout): part of its key, and the `version` its
 * artifact records; an artifact of another version is fitted again. Bump it when a change makes earlier fits stale,
 * the sample's size and seed included.
 */
export const CALIBRATION_ALGORITHM = 2;
/** The type of the metadata execution that records a fit under its key. */
export const CALIBRATION_EXECUTION = 'EvalCalibration';

/** What storing and finding a calibration use. */
export type CalibrationStoreDeps = Pick<ActivityDeps, 'artifacts' | 'metadata' | 'logger'>;

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
  readonly version: typeof CALIBRATION_ALGORITHM;
  readonly eval: string;
  readonly model: string;
  /** Rows of the eval split, `rows` of them fitted on (a seeded sample when fewer); absent when it was not scored. */
  readonly splitRows?: number;
}

/**
 * The key a fit is recorded under: the algorithm, the sample's cap, the eval split's and the graph's sha256.
 *
 * @example calibrationKey(evalRef.sha256, version.sha256, 200_000) // 'eval-calibration/v2/200000/<eval>/<model>'
 */
export function calibrationKey(evalSha256: string, modelSha256: string, maxRows: number): string {
  return `eval-calibration/v${CALIBRATION_ALGORITHM}/${maxRows}/${evalSha256}/${modelSha256}`;
}

/**
 * The artifact at `ref` when it holds a fit of the eval split `expected.eval` (URI) by the graph `expected.model`
 * (sha256) with this algorithm; otherwise (missing, unreadable, corrupt, malformed, stale) undefined, with the reason
 * logged: a fit can always be redone, so no such artifact fails a window. Never throws.
 */
export async function readStoredCalibration(
  deps: CalibrationStoreDeps,
  ref: CalibrationRef,
  expected: { readonly eval: string; readonly model: string },
): Promise<StoredCalibration | undefined> {
  const context = { uri: ref.uri, eval: expected.eval, model: expected.model };
  let stored: Partial<StoredCalibration> | null;
  try {
    stored = JSON.parse((await deps.artifacts.get(ref)).toString('utf8')) as Partial<StoredCalibration> | null;
  } catch (error) {
    deps.logger.warn({ ...context, err: error }, 'the stored calibration cannot be read: fitting it again');
    return undefined;
  }
  const problem =
    stored?.version !== CALIBRATION_ALGORITHM
      ? `version ${stored?.version}, not ${CALIBRATION_ALGORITHM}`
      : stored.eval !== expected.eval || stored.model !== expected.model
        ? `fitted on ${stored.eval} by ${stored.model}`
        : typeof stored.rows !== 'number'
          ? 'no row count'
          : undefined;
  if (problem === undefined) return stored as StoredCalibration;
  deps.logger.warn({ ...context, problem }, 'the stored calibration does not fit this version: fitting it again');
  return undefined;
}

/** The calibration recorded under `key`, if a complete execution recorded one. */
export async function recordedCalibration(
  deps: Pick<CalibrationStoreDeps, 'metadata'>,
  key: string,
): Promise<CalibrationRef | undefined> {
  const execution = await deps.metadata.getExecutionByExternalId(key);
  if (execution?.state !== 'complete') return undefined;
  const result = execution.properties.result as Partial<CalibrationRef> | undefined;
  const fields = [result?.uri, result?.sha256, result?.eval, result?.model];
  return fields.every((field) => typeof field === 'string') ? (result as CalibrationRef) : undefined;
}

/**
 * Stores `stored` (content-addressed) and records its address under `key`. Idempotent and retriable: the same fit is
 * one object, and the first complete record of a key stands (a retry, or a window racing this one, records nothing
 * more).
 */
export async function storeCalibration(
  deps: Pick<CalibrationStoreDeps, 'artifacts' | 'metadata'>,
  key: string,
  stored: StoredCalibration,
): Promise<CalibrationRef> {
  const put = await deps.artifacts.put(`${JSON.stringify(stored)}\n`, {
    kind: 'calibration.json',
    contentType: 'application/json',
  });
  const ref: CalibrationRef = { uri: put.uri, sha256: put.sha256, eval: stored.eval, model: stored.model };
  const execution = await deps.metadata.startExecution({
    externalId: key,
    type: CALIBRATION_EXECUTION,
    properties: { eval: ref.eval, model: ref.model, algorithm: CALIBRATION_ALGORITHM },
  });
  if (execution.state === 'running')
    await deps.metadata.completeExecution(execution.id, { state: 'complete', properties: { result: { ...ref } } });
  return ref;
}
