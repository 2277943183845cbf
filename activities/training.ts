import fs from 'node:fs';
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { FailureType } from '../core/constants.js';
import { DataEngine } from '../data/engine.js';
import type { FittedTransform } from '../data/transform.js';
import { sampleRows } from '../models/dataset.js';
import { exportOnnx, verifyOnnx } from '../models/onnx/index.js';
import { predictRows } from '../models/predict.js';
import { runTrainingThread, TrainingCancelledError } from '../models/run-training-thread.js';
import { TRAINER_KINDS, type TrainerKind } from '../models/training-job.js';
import type { TrainingProgress } from '../models/types.js';
import { ArtifactType, type ModelSignature } from '../schema/index.js';
import type { ArtifactRef } from '../storage/artifact-store.js';
import { activityLogger } from './activity-logger.js';
import type { ActivityDeps } from './deps.js';
import { completedStageResult, recordStage, type StageIdentity } from './stage-lineage.js';

export interface TrainModelInput {
  readonly dataset: string;
  readonly trainer: TrainerKind;
  readonly params?: Record<string, unknown>;
  readonly train: ArtifactRef;
  readonly eval: ArtifactRef;
  readonly transform: ArtifactRef;
  /** Iterations (epochs for the MLP) between checkpoints; default 10. */
  readonly checkpointEvery?: number;
  /** Eval rows the exported graph is verified on; default 2000. */
  readonly verificationRows?: number;
}

export interface TrainModelResult {
  readonly model: ArtifactRef;
  readonly signature: ModelSignature;
  readonly trainer: TrainerKind;
  readonly params: Record<string, unknown>;
  readonly iterations: number;
  /** Loss per iteration (at most 1000 points, evenly thinned), for experiment curves. */
  readonly curve: readonly TrainingProgress[];
  /** Seconds spent training in the attempt that finished (loading the data excluded). */
  readonly trainSeconds: number;
  readonly loadSeconds: number;
  /** The iteration the finishing attempt resumed from, when an earlier attempt left a checkpoint. */
  readonly resumedFromIteration: number | null;
  readonly attempt: number;
  /** ONNX vs in-memory model on eval rows. */
  readonly parity: { readonly maxAbsDiff: number; readonly rows: number };
}

/** What a training attempt heartbeats: where it is, and the checkpoint a retry resumes from. */
export interface TrainingHeartbeat {
  readonly iteration: number;
  readonly loss?: number;
  readonly rowsPerSecond?: number;
  readonly checkpoint?: { readonly ref: ArtifactRef; readonly iteration: number };
}

const MAX_CURVE_POINTS = 1000;

/** Activities of the training task queue: the queue GPU hosts serve. */
export function createTrainingActivities(deps: ActivityDeps) {
  const artifactCache = path.join(deps.scratchDir, 'artifacts');

  return {
    /**
     * Trains one model in a worker thread, heartbeating progress and storing checkpoints in S3; a retry (another
     * worker, after this one died) resumes from the last checkpoint named in the heartbeat details. Cancellation
     * stops the thread at once and keeps the checkpoint. The trained model and its preprocessing are exported as one
     * ONNX graph, verified with onnxruntime against the in-memory model on eval rows (max abs diff ≤ 1e-5), and
     * stored with its signature. Bad parameters and a failed export are non-retryable.
     */
    async trainModel(input: TrainModelInput): Promise<TrainModelResult> {
      if (!TRAINER_KINDS.includes(input.trainer)) {
        throw ApplicationFailure.create({
          type: FailureType.InvalidInput,
          message: `unknown trainer ${JSON.stringify(input.trainer)}; expected one of ${TRAINER_KINDS.join(', ')}`,
          nonRetryable: true,
        });
      }
      const identity: StageIdentity = { stage: 'train', executionType: 'Trainer', context: input.dataset };
      const done = await completedStageResult<TrainModelResult>(deps.metadata, identity.stage);
      if (done) return done;
      const context = Context.current();
      const log = activityLogger(deps.logger);
      const previous = context.info.heartbeatDetails as TrainingHeartbeat | undefined;
      const resumeFrom = previous?.checkpoint
        ? JSON.parse((await deps.artifacts.get(previous.checkpoint.ref)).toString('utf8'))
        : undefined;
      if (previous?.checkpoint) log.info({ iteration: previous.checkpoint.iteration }, 'resuming from checkpoint');

      const [trainPath, evalPath] = await Promise.all([
        deps.artifacts.materialize(input.train, artifactCache),
        deps.artifacts.materialize(input.eval, artifactCache),
      ]);
      const transform = JSON.parse((await deps.artifacts.get(input.transform)).toString('utf8')) as FittedTransform;
      const workDir = path.join(
        deps.scratchDir,
        'work',
        `${context.info.workflowExecution?.workflowId ?? 'standalone'}-train-${context.info.attempt}`.replace(
          /[^\w.-]/g,
          '_',
        ),
      );
      fs.mkdirSync(workDir, { recursive: true });

      let checkpoint = previous?.checkpoint;
      const curve: TrainingProgress[] = [];
      let loadSeconds = 0;
      try {
        const trained = await runTrainingThread(
          {
            trainer: input.trainer,
            params: input.params ?? {},
            trainPath,
            transform,
            workDir,
            checkpointEvery: input.checkpointEvery ?? 10,
            ...(resumeFrom !== undefined ? { resumeFrom } : {}),
          },
          {
            signal: context.cancellationSignal,
            onThreadEnd: ({ terminated }) => {
              if (terminated) log.warn('training thread did not stop within its grace period and was terminated');
            },
            onLoaded: ({ rows, seconds }) => {
              loadSeconds = seconds;
              log.info({ rows, seconds }, 'training data loaded');
            },
            onProgress: (progress) => {
              curve.push(progress);
              context.heartbeat({
                iteration: progress.iteration,
                loss: progress.loss,
                ...(progress.rowsPerSecond !== undefined ? { rowsPerSecond: progress.rowsPerSecond } : {}),
                ...(checkpoint ? { checkpoint } : {}),
              } satisfies TrainingHeartbeat);
            },
            onCheckpoint: async ({ iteration, state }) => {
              const ref = await deps.artifacts.put(JSON.stringify(state), {
                kind: 'checkpoint.json',
                contentType: 'application/json',
              });
              checkpoint = { ref, iteration };
              context.heartbeat({ iteration, checkpoint } satisfies TrainingHeartbeat);
            },
          },
        );
        const exported = exportOnnx(trained.model, transform, { modelName: `${input.dataset}-${input.trainer}` });
        const parity = await verifyExport(
          exported.bytes,
          trained.model,
          transform,
          evalPath,
          workDir,
          input.verificationRows,
        );
        const model = await deps.artifacts.put(Buffer.from(exported.bytes), {
          kind: 'model.onnx',
          contentType: 'application/octet-stream',
        });
        const result: TrainModelResult = {
          model,
          signature: exported.signature,
          trainer: input.trainer,
          params: input.params ?? {},
          iterations: curve.at(-1)?.iteration ?? 0,
          curve: thin(curve),
          trainSeconds: trained.seconds - loadSeconds,
          loadSeconds,
          resumedFromIteration: previous?.checkpoint?.iteration ?? null,
          attempt: context.info.attempt,
          parity,
        };
        await recordStage(deps.metadata, identity, {
          inputs: [
            { role: 'examples', type: ArtifactType.Dataset, ref: input.train },
            { role: 'transform', type: ArtifactType.Transform, ref: input.transform },
          ],
          outputs: [
            {
              role: 'model',
              type: ArtifactType.Model,
              ref: model,
              properties: {
                trainer: input.trainer,
                params: input.params ?? {},
                signature: exported.signature as never,
              },
            },
          ],
          result,
        });
        log.info({ uri: model.uri, iterations: result.iterations, seconds: result.trainSeconds }, 'model trained');
        return result;
      } catch (error) {
        throw toTrainingFailure(error);
      } finally {
        fs.rmSync(workDir, { recursive: true, force: true });
      }
    },
  };
}

async function verifyExport(
  bytes: Uint8Array,
  model: Parameters<typeof predictRows>[0],
  transform: FittedTransform,
  evalPath: string,
  workDir: string,
  rows = 2000,
): Promise<{ maxAbsDiff: number; rows: number }> {
  const engine = await DataEngine.open({ workDir, readableDirs: [path.dirname(evalPath)] });
  let sample: Record<string, unknown>[];
  try {
    sample = await sampleRows(engine, evalPath, rows, 7);
  } finally {
    engine.close();
  }
  const inputs = Object.fromEntries(transform.features.map((f) => [f.name, sample.map((row) => row[f.name])]));
  const parity = await verifyOnnx(bytes, {
    inputs,
    expected: predictRows(model, transform, sample),
    tolerance: 1e-5,
    // Tree ensembles sum in float32 at the end: regression targets far from 0 need a relative allowance.
    relativeTolerance: transform.label.task === 'regression' ? 2 ** -23 : 0,
  });
  return { maxAbsDiff: parity.maxAbsDiff, rows: parity.rows };
}

function thin(curve: readonly TrainingProgress[]): TrainingProgress[] {
  if (curve.length <= MAX_CURVE_POINTS) return [...curve];
  const step = curve.length / MAX_CURVE_POINTS;
  return Array.from({ length: MAX_CURVE_POINTS }, (_, i) => curve[Math.floor(i * step)]!).concat(curve.at(-1)!);
}

/**
 * Temporal reports the activity as cancelled (not failed) only when it ends with the cancellation's own reason; every
 * other error goes on to the failure contract (activities/failure-contract.ts).
 */
function toTrainingFailure(error: unknown): unknown {
  if (error instanceof TrainingCancelledError) return Context.current().cancellationSignal.reason ?? error;
  return error;
}
