import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  defineUpdate,
  isCancellation,
  patched,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  type ActivityOptions,
} from '@temporalio/workflow';
import type {
  BeginPipelineRunResult,
  DeployModelResult,
  EvaluateModelResult,
  ExtractDataResult,
  MainActivities,
  ModelBlessing,
  PrepareDataResult,
  RegisterModelResult,
  RunFailure,
  StatisticsResult,
  TrainingActivities,
  TrainModelResult,
  ValidateDataResult,
  ValidateModelResult,
} from '../activities/index.js';
import { SearchAttributeKeys } from '../core/constants.js';
import type { PipelineDefinition } from '../pipelines/definition.js';
import { datasetOf, deploymentNameOf, modelNameOf } from '../pipelines/names.js';
import { extractSpanOf, splitOf } from '../pipelines/window.js';
import { failureOf } from '../core/failure.js';
import {
  FINAL_FAILURE_TYPES,
  PIPELINE_STAGES,
  RESUMABLE_RECORDS,
  STAGES,
  recordedResult,
  type PipelineStage,
} from '../core/stages.js';

export { PIPELINE_STAGES, type PipelineStage } from '../core/stages.js';

/** How the stage went in this Temporal run; `reused`: completed by an earlier run of this workflow id (a resume). */
export type StageState = 'pending' | 'running' | 'succeeded' | 'reused' | 'skipped' | 'failed' | 'cancelled';

export interface StageProgress {
  readonly name: PipelineStage;
  state: StageState;
  startedAt?: string;
  finishedAt?: string;
  seconds?: number;
}

/** What became of the candidate: the run succeeded in every case; only `deployed` changed what serves. */
export type PipelineOutcome = 'deployed' | 'already_champion' | 'not_blessed' | 'rejected' | 'approval_timed_out';

export interface TrainingPipelineInput {
  /** The pipeline_runs row of this run (its workflow id is this workflow's id). */
  readonly runId: string;
  readonly pipeline: string;
  readonly pipelineVersion: number;
  /** The validated definition of that version: a run depends on nothing else, so its history replays alone. */
  readonly definition: PipelineDefinition;
  /** http, schedule, new_data, drift, manual, ... */
  readonly trigger: string;
  readonly triggeredBy?: string;
  /**
   * The trigger's nominal time (ISO 8601; a schedule action's scheduled time, a backfilled action's past time): a
   * window `relativeTo: 'trigger'` is measured back from it. Absent (runs started before it existed, HTTP runs): the
   * run's start.
   */
  readonly triggeredAt?: string;
  /** The training task queue (configured per deployment, so the starter passes it). */
  readonly trainingTaskQueue: string;
}

export interface ApprovalRequest {
  /** Who decides: a user name or service. */
  readonly actor: string;
  readonly reason?: string;
}

export interface ApprovalDecision {
  readonly approved: boolean;
  readonly actor: string;
  readonly reason: string;
  readonly decidedAt: string;
}

export interface PendingApproval {
  readonly versionId: string;
  readonly version: number;
  readonly deadline: string;
}

export interface PipelineProgress {
  readonly stage: PipelineStage | 'done';
  readonly stages: readonly StageProgress[];
  readonly approval?: PendingApproval;
  readonly outcome?: PipelineOutcome;
}

export interface TrainingPipelineResult {
  readonly runId: string;
  readonly outcome: PipelineOutcome;
  readonly model: RegisterModelResult;
  readonly metrics: Record<string, number>;
  readonly championMetrics?: Record<string, number>;
  readonly blessing: ModelBlessing;
  readonly deployment?: DeployModelResult;
  readonly approval?: ApprovalDecision;
  readonly artifacts: {
    readonly snapshot: string;
    readonly statistics: string;
    readonly schema: string;
    readonly transform: string;
    readonly model: string;
    readonly evaluation: string;
    readonly blessing: string;
  };
  readonly stages: readonly StageProgress[];
}

/**
 * Marks histories that resolve a sliding window before extracting: a history recorded before windows existed has no
 * such activity, and replays without it.
 */
export const SLIDING_WINDOW_PATCH = 'sliding-window-spans';

export const pipelineProgressQuery = defineQuery<PipelineProgress>('progress');
export const approveUpdate = defineUpdate<ApprovalDecision, [ApprovalRequest]>('approve');
export const rejectUpdate = defineUpdate<ApprovalDecision, [ApprovalRequest]>('reject');

/** Failure types no retry can fix: the run fails at once (a resume after fixing the cause is still possible). */
/**
 * A level-1 continuous-training run: extract → statistics → data validation → prepare → train (training task
 * queue) → evaluate (the ONNX artifact, and the champion on the same rows) → model validation (thresholds, champion
 * comparison, infra check) → register → deploy, automatically or after an approve/reject Update. An unblessed
 * version is registered and never deployed. A run that failed can be started again under the same workflow id
 * (a resume): stages it completed are reused, not run again.
 */
export async function trainingPipeline(input: TrainingPipelineInput): Promise<TrainingPipelineResult> {
  const { definition } = input;
  const modelName = modelNameOf(definition);
  const dataset = datasetOf(definition);
  const stages: StageProgress[] = PIPELINE_STAGES.map((name) => ({ name, state: 'pending' }));
  let current: PipelineStage | 'done' = 'extract';
  let pendingApproval: PendingApproval | undefined;
  let decision: ApprovalDecision | undefined;
  let outcome: PipelineOutcome | undefined;

  setHandler(pipelineProgressQuery, () => ({
    stage: current,
    stages,
    ...(pendingApproval ? { approval: pendingApproval } : {}),
    ...(outcome ? { outcome } : {}),
  }));
  const decide = (approved: boolean) => (request: ApprovalRequest) => {
    decision = {
      approved,
      actor: request.actor,
      reason: request.reason ?? (approved ? 'approved' : 'rejected'),
      decidedAt: new Date().toISOString(),
    };
    return decision;
  };
  const onlyWhileWaiting = (request: ApprovalRequest) => {
    if (!pendingApproval || decision) throw new Error('this run is not waiting for an approval');
    if (!request.actor?.trim()) throw new Error('actor is required');
  };
  setHandler(approveUpdate, decide(true), { validator: onlyWhileWaiting });
  setHandler(rejectUpdate, decide(false), { validator: onlyWhileWaiting });

  const retry = definition.retry;
  const stageOptions: ActivityOptions = {
    startToCloseTimeout: '30 minutes',
    heartbeatTimeout: '2 minutes',
    retry: {
      initialInterval: `${retry.initialIntervalSeconds}s`,
      maximumInterval: `${retry.maximumIntervalSeconds}s`,
      backoffCoefficient: 2,
      maximumAttempts: retry.maximumAttempts,
      nonRetryableErrorTypes: [...FINAL_FAILURE_TYPES],
    },
  };
  const activities = proxyActivities<MainActivities>(stageOptions);
  const bookkeeping = proxyActivities<MainActivities>({
    startToCloseTimeout: '1 minute',
    retry: { initialInterval: '1s', maximumInterval: '10s' },
  });
  // Resolving a window reads one column of the source without heartbeating: no heartbeat timeout.
  const window = proxyActivities<MainActivities>({ startToCloseTimeout: '30 minutes', retry: stageOptions.retry! });
  const training = proxyActivities<TrainingActivities>({
    taskQueue: input.trainingTaskQueue,
    startToCloseTimeout: '2 hours',
    heartbeatTimeout: '30 seconds',
    // A cancelled run ends only once the training thread has stopped: the slot is free when the caller hears of it.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: stageOptions.retry!,
  });

  upsertSearchAttributes([
    { key: SearchAttributeKeys.pipeline, value: input.pipeline },
    { key: SearchAttributeKeys.model, value: modelName },
    { key: SearchAttributeKeys.trigger, value: input.trigger },
    { key: SearchAttributeKeys.status, value: 'running' },
  ]);

  const progress = (name: PipelineStage) => stages.find((s) => s.name === name)!;
  let completed: BeginPipelineRunResult['completed'] = {};

  /** Runs one stage, or reuses what an earlier run of this workflow id recorded for it. */
  async function stage<T>(name: PipelineStage, run: () => Promise<T>): Promise<T> {
    current = name;
    upsertSearchAttributes([{ key: SearchAttributeKeys.stage, value: name }]);
    const entry = progress(name);
    const recorded = STAGES[name].resumable ? recordedResult(completed, name) : undefined;
    if (recorded !== undefined) {
      entry.state = 'reused';
      return recorded as T;
    }
    const started = Date.now();
    entry.state = 'running';
    entry.startedAt = new Date(started).toISOString();
    try {
      const result = await run();
      entry.state = 'succeeded';
      return result;
    } catch (error) {
      entry.state = isCancellation(error) ? 'cancelled' : 'failed';
      throw error;
    } finally {
      entry.finishedAt = new Date().toISOString();
      entry.seconds = (Date.now() - started) / 1000;
    }
  }

  try {
    ({ completed } = await bookkeeping.beginPipelineRun({ stages: [...RESUMABLE_RECORDS] }));

    const source = 'uri' in definition.source ? definition.source.uri : definition.source;
    const format = 'uri' in definition.source ? definition.source.format : undefined;
    // The window's spans, resolved when the run first started and kept on its row (a resumed run reads them back).
    const spans =
      definition.window && patched(SLIDING_WINDOW_PATCH)
        ? await window.resolveRunWindow({
            source,
            ...(format ? { format } : {}),
            window: definition.window,
            // Only an activity's input: histories of runs without it replay unchanged.
            ...(input.triggeredAt ? { triggeredAt: input.triggeredAt } : {}),
          })
        : undefined;
    const span = spans ? extractSpanOf(spans) : definition.span;
    const extract: ExtractDataResult = await stage('extract', () =>
      activities.extractData({ dataset, source, ...(format ? { format } : {}), ...(span ? { span } : {}) }),
    );
    const statistics: StatisticsResult = await stage('statistics', () =>
      activities.computeStatistics({ dataset, snapshot: extract.snapshot }),
    );
    const validation: ValidateDataResult = await stage('validate_data', () =>
      activities.validateData({ dataset, snapshot: extract.snapshot, statistics: statistics.statistics }),
    );
    const prepared: PrepareDataResult = await stage('prepare', () =>
      activities.prepareData({
        dataset,
        snapshot: extract.snapshot,
        label: definition.label,
        features: definition.features,
        split: splitOf(definition, spans),
        ...(definition.prepare ? { options: definition.prepare } : {}),
      }),
    );
    const trained: TrainModelResult = await stage('train', () =>
      training.trainModel({
        dataset,
        trainer: definition.trainer.kind,
        params: definition.trainer.params,
        train: prepared.train,
        eval: prepared.eval,
        transform: prepared.transform,
        checkpointEvery: definition.trainer.checkpointEvery,
      }),
    );
    const comparison = definition.validation.champion;
    const evaluation: EvaluateModelResult = await stage('evaluate', () =>
      activities.evaluateModel({
        dataset,
        modelName,
        model: trained.model,
        eval: prepared.eval,
        transform: prepared.transform,
        slices: definition.evaluation.slices,
        threshold: definition.evaluation.threshold,
        minSliceRows: definition.evaluation.minSliceRows,
        compareWithChampion: comparison !== undefined,
      }),
    );
    const validated: ValidateModelResult = await stage('validate_model', () =>
      activities.validateModel({
        dataset,
        model: trained.model,
        eval: prepared.eval,
        metrics: evaluation.metrics,
        thresholds: definition.validation.thresholds,
        ...(comparison ? { comparison } : {}),
        ...(evaluation.champion ? { champion: evaluation.champion } : {}),
        infra: definition.validation.infra,
      }),
    );
    const registered: RegisterModelResult = await stage('register', () =>
      activities.registerModel({
        dataset,
        modelName,
        pipeline: input.pipeline,
        pipelineVersion: input.pipelineVersion,
        model: trained.model,
        signature: trained.signature,
        metrics: evaluation.metrics,
        params: trained.params,
        trainer: trained.trainer,
        blessing: validated.blessing,
        lineage: {
          snapshot: extract.snapshot,
          statistics: statistics.statistics,
          schema: validation.schema,
          transform: prepared.transform,
          evaluation: evaluation.report,
          blessing: validated.record,
        },
      }),
    );

    let deployment: DeployModelResult | undefined;
    const blessed = validated.blessing.blessed;
    if (!blessed) {
      outcome = 'not_blessed';
    } else if (definition.deployment.policy === 'approval') {
      current = 'approval';
      const entry = progress('approval');
      entry.state = 'running';
      entry.startedAt = new Date().toISOString();
      const timeoutMs = definition.deployment.approvalTimeoutSeconds * 1000;
      upsertSearchAttributes([
        { key: SearchAttributeKeys.stage, value: 'approval' },
        { key: SearchAttributeKeys.status, value: 'waiting_approval' },
      ]);
      await bookkeeping.setPipelineRunStatus({ status: 'waiting_approval' });
      // Offered only once the run's row says so: whoever sees the pending approval (query, API) can also act on it.
      pendingApproval = {
        versionId: registered.versionId,
        version: registered.version,
        deadline: new Date(Date.now() + timeoutMs).toISOString(),
      };
      let decided: boolean;
      try {
        decided = await condition(() => decision !== undefined, timeoutMs);
      } catch (error) {
        // Cancelled while waiting: the progress query must not show the approval as still running.
        entry.state = isCancellation(error) ? 'cancelled' : 'failed';
        entry.finishedAt = new Date().toISOString();
        throw error;
      }
      entry.finishedAt = new Date().toISOString();
      entry.state = 'succeeded';
      pendingApproval = undefined;
      await bookkeeping.setPipelineRunStatus({ status: 'running' });
      upsertSearchAttributes([{ key: SearchAttributeKeys.status, value: 'running' }]);
      if (!decided) outcome = 'approval_timed_out';
      else if (!decision!.approved) outcome = 'rejected';
    }

    if (blessed && outcome === undefined) {
      const approvedBy = decision ? `approved by ${decision.actor}: ${decision.reason}` : 'automatic policy';
      deployment = await stage('deploy', () =>
        activities.deployModel({
          deploymentName: deploymentNameOf(definition),
          modelName,
          versionId: registered.versionId,
          actor: decision?.actor ?? `workflow:${input.runId}`,
          reason: `${validated.blessing.reason} (${approvedBy})`,
        }),
      );
      outcome = deployment.changed ? 'deployed' : 'already_champion';
    }
    for (const entry of stages) if (entry.state === 'pending') entry.state = 'skipped';
    current = 'done';
    upsertSearchAttributes([
      { key: SearchAttributeKeys.stage, value: 'done' },
      { key: SearchAttributeKeys.status, value: outcome! },
    ]);
    await bookkeeping.setPipelineRunStatus({ status: 'succeeded', outcome: outcome! });
    return {
      runId: input.runId,
      outcome: outcome!,
      model: registered,
      metrics: evaluation.metrics,
      ...(evaluation.champion?.metrics ? { championMetrics: evaluation.champion.metrics } : {}),
      blessing: validated.blessing,
      ...(deployment ? { deployment } : {}),
      ...(decision ? { approval: decision } : {}),
      artifacts: {
        snapshot: extract.snapshot.uri,
        statistics: statistics.statistics.uri,
        schema: validation.schema.uri,
        transform: prepared.transform.uri,
        model: trained.model.uri,
        evaluation: evaluation.report.uri,
        blessing: validated.record.uri,
      },
      stages,
    };
  } catch (error) {
    const cancelled = isCancellation(error);
    const failure = describeFailure(error, current === 'done' ? undefined : current);
    // Recording the end must happen even when the run itself was cancelled.
    await CancellationScope.nonCancellable(async () => {
      upsertSearchAttributes([{ key: SearchAttributeKeys.status, value: cancelled ? 'cancelled' : 'failed' }]);
      await bookkeeping.setPipelineRunStatus(cancelled ? { status: 'cancelled' } : { status: 'failed', failure });
    });
    if (cancelled) throw error;
    throw ApplicationFailure.create({
      type: failure.type,
      message: `stage ${failure.stage ?? 'start'} failed: ${failure.message}`,
      nonRetryable: true,
      details: [failure],
    });
  }
}

/** The failure's stable type (the activity's ApplicationFailure type, Timeout, ...), message and stage. */
function describeFailure(error: unknown, stage: string | undefined): RunFailure {
  return { ...failureOf(error), ...(stage ? { stage } : {}) };
}
