/**
 * The pipeline's last stages (TFX's registration and Pusher): the blessed candidate becomes a model version with its
 * lineage, and a version becomes a deployment's champion. Registry writes are keyed by content hash and deployment
 * writes by version, so retries change nothing; registration also returns its recorded result after completion.
 */
import { PLATFORM_VERSION } from '../core/version.js';
import { pipelineDefinitionSchema } from '../pipelines/definition.js';
import { ensureMonitorSchedule } from '../pipelines/monitoring-schedule.js';
import { ArtifactType, type JsonProperties, type ModelBlessing, type ModelSignature } from '../schema/index.js';
import type { ArtifactRef } from '../storage/artifact-store.js';
import { activityLogger } from './activity-logger.js';
import type { ActivityDeps } from './deps.js';
import { completedStageResult, currentWorkflow, recordStage, type StageIdentity } from './stage-lineage.js';

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

/** The register and deploy stages' activities; served by the main task queue. */
export function createRegisterDeployActivities(deps: ActivityDeps) {
  return {
    /**
     * Registers the model version with its URI, sha256, signature, metrics, blessing, parameters and code version;
     * its lineage (snapshot, statistics, schema, transform, evaluation, blessing → model) is recorded in the metadata
     * store and the version points at the model artifact. The same ONNX bytes are the same version.
     */
    async registerModel(input: RegisterModelInput): Promise<RegisterModelResult> {
      const identity: StageIdentity = { stage: 'register', executionType: 'ModelRegistry', context: input.dataset };
      const done = await completedStageResult<RegisterModelResult>(deps.metadata, identity.stage);
      if (done) return done;
      const { workflowId } = currentWorkflow();
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
      // This run's own approval (or automatic policy) decides: an earlier run's rejection of the same bytes does not.
      const run = await deps.pipelines.getRunByWorkflowId(currentWorkflow().workflowId);
      const deployed = await deps.deployments.deploy({ ...input, ...(run ? { approvedInRun: run.id } : {}) });
      // The run's definition asks for monitoring: the deployment's schedule exists once deployed, and follows the
      // definition's interval and window unless it was set by hand through the API (then it is kept as set).
      const definition = run ? await deps.pipelines.getVersionById(run.pipelineVersionId) : undefined;
      const monitoring = definition ? pipelineDefinitionSchema.parse(definition.definition).monitoring : undefined;
      if (monitoring && deps.temporal) {
        await ensureMonitorSchedule(deps.temporal.client, {
          deployment: input.deploymentName,
          setBy: 'definition',
          everySeconds: monitoring.everySeconds,
          windowSeconds: monitoring.windowSeconds,
          taskQueue: deps.temporal.taskQueue,
          logger: activityLogger(deps.logger),
        });
      } else if (monitoring) {
        activityLogger(deps.logger).warn(
          { deployment: input.deploymentName },
          'this worker has no Temporal client: the monitoring schedule was not created',
        );
      }
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
