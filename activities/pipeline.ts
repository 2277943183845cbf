/**
 * The stages of the continuous-training pipeline after training (TFX's Evaluator, InfraValidator, Pusher) and the
 * run's own bookkeeping. Each stage is idempotent like the data stages: its execution is keyed by workflow id and
 * stage, a retry after completion returns the recorded result, registry writes are keyed by content hash and
 * deployment writes by version.
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { PLATFORM_VERSION } from '../core/version.js';
import { DataEngine } from '../data/engine.js';
import type { FittedTransform } from '../data/transform.js';
import { evaluateOnnxModel, type EvaluationReport } from '../models/evaluate.js';
import { infraValidate, type InfraValidationResult } from '../models/infra-validation.js';
import {
  judgeModel,
  type ChampionComparison,
  type Threshold,
  type ValidationCheck,
} from '../models/model-validation.js';
import {
  ArtifactType,
  type JsonProperties,
  type ModelBlessing,
  type ModelSignature,
  type RunFailure,
} from '../schema/index.js';
import type { PipelineRunStatus } from '../schema/pipelines.js';
import type { ArtifactRef } from '../storage/artifact-store.js';
import { registryWrite } from './registry-write.js';
import { activityLogger } from './activity-logger.js';
import type { ActivityDeps } from './deps.js';
import { inWorkDir as inWorkDirOf } from './work-dir.js';
import { completedStageResult, recordStage, type StageIdentity } from './stage-lineage.js';

const JSON_TYPE = 'application/json';

export interface BeginPipelineRunInput {
  /** Stage keys (as the activities record them) whose completed results a resumed run may reuse. */
  readonly stages: readonly string[];
}

export interface BeginPipelineRunResult {
  /** Results of stages this workflow id completed before (a resumed run skips them), by stage key. */
  readonly completed: Record<string, unknown>;
}

export interface EvaluateModelInput {
  readonly dataset: string;
  readonly modelName: string;
  readonly model: ArtifactRef;
  readonly eval: ArtifactRef;
  readonly transform: ArtifactRef;
  readonly slices: readonly string[];
  readonly threshold: number;
  readonly minSliceRows: number;
  /** Also evaluate the current champion on the same eval data, for the comparison. */
  readonly compareWithChampion: boolean;
}

export interface ChampionEvaluation {
  readonly versionId: string;
  readonly version: number;
  /** Absent when the champion could not be evaluated on this data (see `error`). */
  readonly metrics?: Record<string, number>;
  readonly report?: ArtifactRef;
  readonly error?: string;
}

export interface EvaluateModelResult {
  readonly report: ArtifactRef;
  readonly metrics: Record<string, number>;
  readonly rows: number;
  readonly slices: number;
  readonly champion?: ChampionEvaluation;
  readonly seconds: number;
}

export interface ValidateModelInput {
  readonly dataset: string;
  readonly model: ArtifactRef;
  readonly eval: ArtifactRef;
  readonly metrics: Record<string, number>;
  readonly thresholds: readonly Threshold[];
  readonly comparison?: ChampionComparison;
  readonly champion?: ChampionEvaluation;
  readonly infra: { readonly maxLatencyMs: number; readonly sampleRows: number };
}

export interface ValidateModelResult {
  readonly blessing: ModelBlessing;
  readonly checks: readonly ValidationCheck[];
  readonly infra: InfraValidationResult;
  readonly record: ArtifactRef;
}

export interface RegisterModelInput {
  readonly dataset: string;
  readonly modelName: string;
  readonly pipeline: string;
  readonly pipelineVersion: number;
  readonly model: ArtifactRef;
  readonly signature: ModelSignature;
  readonly metrics: Record<string, number>;
  readonly params: Record<string, unknown>;
  readonly trainer: string;
  readonly blessing: ModelBlessing;
  /** Everything the version was made from; becomes its lineage in the metadata store. */
  readonly lineage: {
    readonly snapshot: ArtifactRef;
    readonly statistics: ArtifactRef;
    readonly schema: ArtifactRef;
    readonly transform: ArtifactRef;
    readonly evaluation: ArtifactRef;
    readonly blessing: ArtifactRef;
  };
}

export interface RegisterModelResult {
  readonly modelName: string;
  readonly versionId: string;
  readonly version: number;
  /** False when these exact ONNX bytes were registered before (by this run's retry or by an earlier run). */
  readonly created: boolean;
  readonly status: string;
}

export interface DeployModelInput {
  readonly deploymentName: string;
  readonly modelName: string;
  readonly versionId: string;
  readonly actor: string;
  readonly reason: string;
}

export interface DeployModelResult {
  readonly deploymentName: string;
  readonly versionId: string;
  readonly revisionId: string;
  readonly previousVersionId: string | null;
  readonly changed: boolean;
}

export interface SetRunStatusInput {
  readonly status: PipelineRunStatus;
  readonly failure?: RunFailure;
  /** With `succeeded`: what became of the candidate (deployed, not_blessed, ...). */
  readonly outcome?: string;
}

function currentWorkflowId(): string {
  const execution = Context.current().info.workflowExecution;
  if (!execution) throw new Error('pipeline activities run inside a workflow');
  return execution.workflowId;
}

/** Activities of the pipeline's later stages and its run record; served by the main task queue. */
export function createPipelineActivities(deps: ActivityDeps) {
  const artifactCache = path.join(deps.scratchDir, 'artifacts');

  const inWorkDir = <T>(stage: string, work: (dir: string) => Promise<T>): Promise<T> =>
    inWorkDirOf(deps.scratchDir, stage, work);

  async function withEngine<T>(stage: string, readable: string, work: (engine: DataEngine) => Promise<T>): Promise<T> {
    return inWorkDir(stage, async (workDir) => {
      const engine = await DataEngine.open({ workDir, readableDirs: [path.dirname(readable)] });
      try {
        return await work(engine);
      } finally {
        engine.close();
      }
    });
  }

  const putJson = (value: unknown, kind: string) =>
    deps.artifacts.put(JSON.stringify(value, null, 2), { kind, contentType: JSON_TYPE });

  return {
    /**
     * Marks the run started (or resumed: a new Temporal run of the same workflow id) and returns the results of the
     * stages this workflow id already completed, so that a resumed run starts at the stage that failed.
     */
    async beginPipelineRun(input: BeginPipelineRunInput): Promise<BeginPipelineRunResult> {
      const { info } = Context.current();
      const workflowId = currentWorkflowId();
      await deps.pipelines.markRunStarted(workflowId, info.workflowExecution?.runId ?? '');
      const completed: Record<string, unknown> = {};
      for (const stage of input.stages) {
        const result = await completedStageResult<unknown>(deps.metadata, stage);
        if (result !== undefined) completed[stage] = result;
      }
      return { completed };
    },

    /** Records the run's status (running, waiting for approval, and the final one with its failure). */
    async setPipelineRunStatus(input: SetRunStatusInput): Promise<void> {
      await deps.pipelines.setRunStatus(currentWorkflowId(), input.status, {
        ...(input.failure ? { failure: input.failure } : {}),
        ...(input.outcome ? { outcome: input.outcome } : {}),
      });
    },

    /**
     * Evaluator: scores the exported ONNX model (the artifact that will serve) on the eval split, overall and per
     * slice, and the current champion on the same rows, so that the comparison is like for like.
     */
    async evaluateModel(input: EvaluateModelInput): Promise<EvaluateModelResult> {
      const identity: StageIdentity = { stage: 'evaluate', executionType: 'Evaluator', context: input.dataset };
      const done = await completedStageResult<EvaluateModelResult>(deps.metadata, identity.stage);
      if (done) return done;
      const log = activityLogger(deps.logger);
      const [evalPath, onnx, transformBytes] = await Promise.all([
        deps.artifacts.materialize(input.eval, artifactCache),
        deps.artifacts.get(input.model),
        deps.artifacts.get(input.transform),
      ]);
      const transform = JSON.parse(transformBytes.toString('utf8')) as FittedTransform;
      const options = { slices: input.slices, threshold: input.threshold, minSliceRows: input.minSliceRows };
      const champion = input.compareWithChampion ? await deps.registry.champion(input.modelName) : undefined;

      const { report, championEvaluation } = await withEngine(identity.stage, evalPath, async (engine) => {
        const candidate = await evaluateOnnxModel({ onnx, evalPath, transform, engine, ...options });
        Context.current().heartbeat({ stage: identity.stage, phase: 'champion' });
        let championEvaluation: { report?: EvaluationReport; error?: string } | undefined;
        if (champion?.sha256 === input.model.sha256) {
          // The same bytes score the same rows identically: a deterministic retrain of unchanged data is common
          // (every rerun of the demo), and scoring it twice doubled the stage's time.
          championEvaluation = { report: candidate };
        } else if (champion) {
          try {
            const championOnnx = await deps.artifacts.get({ uri: champion.onnxUri, sha256: champion.sha256 });
            championEvaluation = {
              report: await evaluateOnnxModel({ onnx: championOnnx, evalPath, transform, engine, ...options }),
            };
          } catch (error) {
            // A champion that cannot score this data (its inputs differ from this pipeline's features) cannot be
            // compared: the validator then refuses to bless rather than deploy blind.
            championEvaluation = { error: error instanceof Error ? error.message : String(error) };
            log.warn({ err: error, championVersion: champion.version }, 'champion could not be evaluated');
          }
        }
        return { report: candidate, championEvaluation };
      });

      const reportRef = await putJson(report, 'evaluation.json');
      let championResult: ChampionEvaluation | undefined;
      if (champion && championEvaluation) {
        championResult = {
          versionId: champion.id,
          version: champion.version,
          ...(championEvaluation.report
            ? {
                metrics: championEvaluation.report.metrics,
                report: await putJson(championEvaluation.report, 'evaluation.json'),
              }
            : { error: championEvaluation.error ?? 'unknown error' }),
        };
      }
      const result: EvaluateModelResult = {
        report: reportRef,
        metrics: report.metrics,
        rows: report.rows,
        slices: report.slices.length,
        ...(championResult ? { champion: championResult } : {}),
        seconds: report.seconds,
      };
      await recordStage(deps.metadata, identity, {
        inputs: [
          { role: 'model', type: ArtifactType.Model, ref: input.model },
          { role: 'examples', type: ArtifactType.Dataset, ref: input.eval, properties: { split: 'eval' } },
        ],
        outputs: [
          {
            role: 'evaluation',
            type: ArtifactType.Evaluation,
            ref: reportRef,
            properties: { metrics: report.metrics as JsonProperties },
          },
        ],
        result,
      });
      log.info({ metrics: report.metrics, champion: championResult?.metrics }, 'model evaluated');
      return result;
    },

    /**
     * Model validation: absolute thresholds, the comparison with the champion, and infra validation (the model loads
     * in a fresh session and answers a sample request in time). The outcome is a blessing with its reasons; an
     * unblessed model is not a failure of the run, it is a verdict.
     */
    async validateModel(input: ValidateModelInput): Promise<ValidateModelResult> {
      const identity: StageIdentity = {
        stage: 'validate_model',
        executionType: 'ModelValidator',
        context: input.dataset,
      };
      const done = await completedStageResult<ValidateModelResult>(deps.metadata, identity.stage);
      if (done) return done;
      const [evalPath, onnx] = await Promise.all([
        deps.artifacts.materialize(input.eval, artifactCache),
        deps.artifacts.get(input.model),
      ]);
      const infra = await withEngine(identity.stage, evalPath, (engine) =>
        infraValidate({ onnx, evalPath, engine, ...input.infra }),
      );
      const champion = input.champion;
      const judgement = judgeModel({
        candidate: input.metrics,
        thresholds: input.thresholds,
        ...(input.comparison ? { comparison: input.comparison } : {}),
        ...(champion?.metrics ? { champion: { version: champion.version, metrics: champion.metrics } } : {}),
        infra,
      });
      const checks: ValidationCheck[] = [...judgement.checks];
      if (input.comparison && champion && !champion.metrics) {
        checks.push({
          name: 'champion',
          passed: false,
          detail: `champion v${champion.version} could not be evaluated on this data: ${champion.error ?? 'unknown'}`,
        });
      }
      const failed = checks.filter((c) => !c.passed);
      const blessing: ModelBlessing = {
        blessed: failed.length === 0,
        reason: failed.length === 0 ? judgement.reason : failed.map((c) => c.detail).join('; '),
        ...(champion ? { baselineVersionId: champion.versionId } : {}),
        metrics: input.metrics,
        thresholds: Object.fromEntries(
          input.thresholds.flatMap((t) => [
            ...(t.min !== undefined ? [[`${t.metric}.min`, t.min] as const] : []),
            ...(t.max !== undefined ? [[`${t.metric}.max`, t.max] as const] : []),
          ]),
        ),
        evaluatedAt: new Date().toISOString(),
      };
      const record = await putJson({ blessing, checks, infra }, 'blessing.json');
      const result: ValidateModelResult = { blessing, checks, infra, record };
      await recordStage(deps.metadata, identity, {
        inputs: [{ role: 'model', type: ArtifactType.Model, ref: input.model }],
        outputs: [
          {
            role: 'blessing',
            type: ArtifactType.Report,
            ref: record,
            properties: { blessed: blessing.blessed, reason: blessing.reason },
          },
        ],
        result,
      });
      activityLogger(deps.logger).info({ blessed: blessing.blessed, reason: blessing.reason }, 'model validated');
      return result;
    },

    /**
     * Registers the model version with its URI, sha256, signature, metrics, blessing, parameters and code version;
     * its lineage (snapshot, statistics, schema, transform, evaluation, blessing → model) is recorded in the metadata
     * store and the version points at the model artifact. The same ONNX bytes are the same version.
     */
    async registerModel(input: RegisterModelInput): Promise<RegisterModelResult> {
      const identity: StageIdentity = { stage: 'register', executionType: 'ModelRegistry', context: input.dataset };
      const done = await completedStageResult<RegisterModelResult>(deps.metadata, identity.stage);
      if (done) return done;
      const workflowId = currentWorkflowId();
      const run = await deps.pipelines.getRunByWorkflowId(workflowId);
      const l = input.lineage;
      const modelProperties = { model: input.modelName, trainer: input.trainer, pipeline: input.pipeline };
      // The model's metadata artifact first (an upsert by URI, the same row recordStage meets below), so the version
      // can point at it; the stage's execution is completed only once the registry has answered.
      const modelArtifact = await deps.metadata.putArtifact({
        type: ArtifactType.Model,
        uri: input.model.uri,
        sha256: input.model.sha256,
        bytes: input.model.bytes,
        contentType: input.model.contentType,
        properties: { kind: input.model.kind, ...modelProperties },
      });
      const { version, created } = await deps.registry.registerVersion({
        modelName: input.modelName,
        onnxUri: input.model.uri,
        sha256: input.model.sha256,
        signature: input.signature,
        metrics: input.metrics,
        params: { trainer: input.trainer, ...input.params } as JsonProperties,
        blessing: input.blessing,
        codeVersion: PLATFORM_VERSION,
        ...(run ? { sourceRunId: run.id } : {}),
        artifactId: modelArtifact.id,
        actor: `workflow:${workflowId}`,
        reason: `pipeline ${input.pipeline} v${input.pipelineVersion}`,
      });
      const result: RegisterModelResult = {
        modelName: input.modelName,
        versionId: version.id,
        version: version.version,
        created,
        status: version.status,
      };
      await recordStage(deps.metadata, identity, {
        inputs: [
          { role: 'examples', type: ArtifactType.Dataset, ref: l.snapshot },
          { role: 'statistics', type: ArtifactType.Statistics, ref: l.statistics },
          { role: 'schema', type: ArtifactType.Schema, ref: l.schema },
          { role: 'transform', type: ArtifactType.Transform, ref: l.transform },
          { role: 'evaluation', type: ArtifactType.Evaluation, ref: l.evaluation },
          { role: 'blessing', type: ArtifactType.Report, ref: l.blessing },
        ],
        outputs: [{ role: 'model', type: ArtifactType.Model, ref: input.model, properties: modelProperties }],
        result,
      });
      activityLogger(deps.logger).info(result, 'model version registered');
      return result;
    },

    /** Pusher: makes a blessed version the deployment's champion (serving follows the deployment record). */
    async deployModel(input: DeployModelInput): Promise<DeployModelResult> {
      const deployed = await registryWrite(() => deps.registry.deploy(input));
      return {
        deploymentName: input.deploymentName,
        versionId: input.versionId,
        revisionId: deployed.revision.id,
        previousVersionId: deployed.previousVersionId,
        changed: deployed.changed,
      };
    },
  };
}

export type PipelineActivities = ReturnType<typeof createPipelineActivities>;
