/**
 * Batch scoring (TFX's BulkInferrer) as an activity: runs a registered model version over a Parquet dataset and
 * stores the predictions, next to the input's columns, as one Parquet artifact. The scoring itself is
 * serving/batch-scorer.ts; this file adds what Temporal needs: idempotency per workflow, heartbeats, the stage's
 * record in the metadata store, and failures Temporal understands (cancellation included).
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { toApplicationFailure } from '../core/application-failure.js';
import { ArtifactType } from '../schema/index.js';
import { BatchScoringError, DEFAULT_BATCH_ROWS, resolveScoringInput, scoreFiles } from '../serving/batch-scorer.js';
import { compileSignature } from '../serving/signature.js';
import type { ArtifactRef } from '../storage/artifact-store.js';
import { activityLogger } from './activity-logger.js';
import type { ActivityDeps } from './deps.js';
import { completedStageResult, recordStage, recordStageFailure, type StageIdentity } from './stage-lineage.js';
import { inWorkDir } from './work-dir.js';

const PARQUET_TYPE = 'application/vnd.apache.parquet';
const HEARTBEAT_EVERY_MS = 2_000;

export interface ScoreDatasetInput {
  readonly modelName: string;
  /** A version number, or an alias (`champion`). The API pins the number it resolved. */
  readonly version: number | string;
  /**
   * Parquet to score: a local path, folder or glob, or `s3://bucket/key` (an object, a prefix or a glob) of any
   * bucket (artifact URIs included). Several files are read as one dataset (columns matched by name).
   */
  readonly input: string;
  /** Input columns copied to the output, in this order, before the predictions; default: every input column. */
  readonly passthrough?: readonly string[];
  /** Rows per onnxruntime run; default 50 000. */
  readonly batchRows?: number;
}

export interface ScoredModel {
  readonly name: string;
  readonly version: number;
  readonly versionId: string;
}

export interface ScoreDatasetResult {
  /** The predictions (Parquet, kind `predictions.parquet`): pass-through columns, then `prediction` (+ `probabilities`). */
  readonly output: ArtifactRef;
  readonly rows: number;
  /** The output's columns, in order. */
  readonly columns: readonly string[];
  readonly model: ScoredModel;
  readonly input: string;
  readonly inputFiles: number;
  /** Wall time of the whole activity (resolve, download, score, write, upload). */
  readonly seconds: number;
  /** Of the scoring pass alone (read, feed, run, append). */
  readonly scoringSeconds: number;
  readonly rowsPerSecond: number;
}

/** What the activity heartbeats (and the API shows as progress). */
export interface ScoreProgress {
  readonly phase: 'resolve' | 'download' | 'scoring' | 'writing' | 'upload';
  readonly rows: number;
  readonly total?: number;
}

/** Activities of batch scoring; served by the main task queue. */
export function createBatchScoringActivities(deps: ActivityDeps) {
  const objectCache = path.join(deps.scratchDir, 'objects');

  return {
    /**
     * Scores a Parquet dataset with a registered model version and stores the predictions as Parquet. Idempotent
     * per workflow: a retry after completion returns the recorded result. Heartbeats `{ phase, rows, total }`.
     *
     * @throws ApplicationFailure NotFound (no such version, input or artifact), InvalidInput (a model input has no
     *   column, a bad pass-through column), DataValidation (the input is not readable Parquet): all final.
     */
    async scoreDataset(input: ScoreDatasetInput): Promise<ScoreDatasetResult> {
      // No context: contexts name pipelines, and a model may be scored by anyone; the artifacts carry the model.
      const identity: StageIdentity = { stage: 'batch_score', executionType: 'BulkInferrer' };
      const done = await completedStageResult<ScoreDatasetResult>(deps.metadata, identity.stage);
      if (done) return done;
      const started = performance.now();
      const context = Context.current();
      const log = activityLogger(deps.logger);
      const batchRows = input.batchRows ?? DEFAULT_BATCH_ROWS;
      if (!Number.isSafeInteger(batchRows) || batchRows < 1) {
        throw toApplicationFailure(
          new BatchScoringError('invalid', `batchRows must be a positive integer, got ${batchRows}`),
        );
      }
      let progress: ScoreProgress = { phase: 'resolve', rows: 0 };
      const beat = () => context.heartbeat(progress);
      beat();
      // Long DuckDB statements and uploads are awaited off the event loop: the ticker keeps the heartbeat alive.
      const ticker = setInterval(beat, HEARTBEAT_EVERY_MS);

      try {
        const version = await deps.registry.getVersion(input.modelName, input.version);
        if (!version) {
          throw new BatchScoringError(
            'not_found',
            typeof input.version === 'number'
              ? `model ${input.modelName} has no version ${input.version}`
              : `model ${input.modelName} has no version aliased ${input.version}`,
          );
        }
        const model: ScoredModel = { name: input.modelName, version: version.version, versionId: version.id };
        const signature = compileSignature(version.signature);
        const onnx = await deps.artifacts.get({ uri: version.onnxUri, sha256: version.sha256 });
        const files = await resolveScoringInput(input.input, {
          objects: deps.objects,
          cacheDir: objectCache,
          signal: context.cancellationSignal,
          policy: deps.dataAccess.policy,
          onDownload: (bytes) => {
            progress = { phase: 'download', rows: 0, total: bytes };
          },
        });

        const { scored, output } = await inWorkDir(deps.scratchDir, identity.stage, async (workDir) => {
          const scored = await scoreFiles({
            workDir,
            files,
            onnx,
            signature,
            passthrough: input.passthrough,
            batchRows,
            onProgress: (next) => {
              progress = next;
              beat();
            },
            signal: context.cancellationSignal,
          });
          progress = { phase: 'upload', rows: scored.rows, total: scored.rows };
          const output = await deps.artifacts.putFile(scored.outputPath, {
            kind: 'predictions.parquet',
            contentType: PARQUET_TYPE,
          });
          return { scored, output };
        });
        const seconds = (performance.now() - started) / 1000;
        const result: ScoreDatasetResult = {
          output,
          rows: scored.rows,
          columns: scored.columns,
          model,
          input: input.input,
          inputFiles: files.length,
          seconds,
          scoringSeconds: scored.seconds,
          rowsPerSecond: seconds > 0 ? scored.rows / seconds : 0,
        };
        const modelRef: ArtifactRef = {
          uri: version.onnxUri,
          sha256: version.sha256,
          bytes: onnx.length,
          contentType: 'application/octet-stream',
          kind: 'model.onnx',
        };
        await recordStage(deps.metadata, identity, {
          inputs: [{ role: 'model', type: ArtifactType.Model, ref: modelRef, properties: { model: input.modelName } }],
          outputs: [
            {
              role: 'predictions',
              type: ArtifactType.Dataset,
              ref: output,
              properties: {
                model: input.modelName,
                version: version.version,
                source: input.input,
                rows: scored.rows,
              },
            },
          ],
          result,
        });
        log.info(
          { model, rows: scored.rows, seconds, rowsPerSecond: result.rowsPerSecond, uri: output.uri },
          'dataset scored',
        );
        return result;
      } catch (error) {
        // Temporal reports the activity as cancelled (not failed) when it ends with the cancellation's own reason.
        if (isAbortError(error) && context.cancellationSignal.aborted) throw context.cancellationSignal.reason ?? error;
        const failure = toApplicationFailure(error);
        if (failure instanceof ApplicationFailure && failure.nonRetryable) {
          await recordStageFailure(deps.metadata, identity, {
            type: failure.type ?? 'Error',
            message: failure.message,
          }).catch((recordError: unknown) => log.warn({ err: recordError }, 'could not record the stage failure'));
        }
        throw failure;
      } finally {
        clearInterval(ticker);
      }
    },
  };
}

export type BatchScoringActivities = ReturnType<typeof createBatchScoringActivities>;

/** An error named `AbortError`: how the scorer and the object source stop when their signal fires. */
function isAbortError(error: unknown): error is Error {
  return error instanceof Error && error.name === 'AbortError';
}
