/**
 * The runs API's responses: the OpenAPI schemas of a run, its stages, artifacts and live progress, and how a stored
 * run (with its stages' recorded outputs) and a workflow's progress query become them. The routes are runs.ts's.
 */
import { z } from '@hono/zod-openapi';
import { PIPELINE_STAGES } from '../../core/stages.js';
import { PIPELINE_RUN_STATUSES, type PipelineRunStage } from '../../schema/index.js';
import type { RunSummary } from '../../storage/pipeline-store.js';
import type { PipelineProgress } from '../../workflows/index.js';
import { asRecord, durationMs, iso } from './common.js';

const failureSchema = z
  .object({ type: z.string(), message: z.string(), stage: z.string().optional() })
  .nullable()
  .openapi('RunFailure');

const spanSchema = z.object({
  from: z.string().openapi({ format: 'date-time', description: 'Inclusive.' }),
  to: z.string().openapi({ format: 'date-time', description: 'Exclusive.' }),
});

const resolvedSpansSchema = z
  .object({
    column: z.string(),
    train: spanSchema,
    eval: spanSchema.optional(),
    anchor: z.object({
      kind: z.enum(['data', 'trigger']),
      at: z.string().openapi({ format: 'date-time' }),
    }),
  })
  .nullable()
  .openapi('ResolvedSpans', {
    description:
      'The definition’s sliding window as this run resolved it when it first started (kept by a resume): train and ' +
      'eval spans `[from, to)` on the window’s column, measured back from the newest event time or the trigger time. ' +
      'Null for a definition without a window, or before the run resolved it.',
  });

export const linksSchema = z
  .object({
    self: z.string(),
    temporalUi: z.string().optional().openapi({ description: 'The run’s workflow in the Temporal UI.' }),
  })
  .openapi('RunLinks');

export const runSchema = z
  .object({
    id: z.string(),
    pipeline: z.string(),
    pipelineVersion: z.number().int(),
    pipelineVersionId: z.string(),
    workflowId: z.string(),
    temporalRunId: z.string().nullable(),
    status: z.enum(PIPELINE_RUN_STATUSES),
    trigger: z.string(),
    triggeredBy: z.string().nullable(),
    idempotencyKey: z.string().nullable(),
    startedAt: z.string().openapi({ format: 'date-time' }),
    finishedAt: z.string().nullable().openapi({ format: 'date-time' }),
    durationMs: z.number().nullable(),
    failure: failureSchema,
    outcome: z.string().nullable().openapi({
      description:
        'Of a succeeded run: deployed, already_champion, not_blessed, rejected or approval_timed_out (null before the end).',
    }),
    resolvedSpans: resolvedSpansSchema,
  })
  .openapi('PipelineRun');

const stageSchema = z
  .object({
    name: z.string(),
    status: z.string(),
    attempt: z.number().int(),
    startedAt: z.string().openapi({ format: 'date-time' }),
    finishedAt: z.string().nullable().openapi({ format: 'date-time' }),
    durationMs: z.number().nullable(),
    outputs: z.record(z.string(), z.unknown()),
    failure: failureSchema,
  })
  .openapi('PipelineRunStage');

const artifactSchema = z
  .object({
    stage: z.string(),
    name: z.string(),
    uri: z.string(),
    sha256: z.string().optional(),
    bytes: z.number().optional(),
    kind: z.string().optional(),
  })
  .openapi('RunArtifact');

const progressSchema = z
  .object({
    stage: z.string().openapi({ description: 'The stage running now, or `done`.' }),
    stages: z.array(
      z.object({
        name: z.string(),
        state: z.string(),
        startedAt: z.string().optional(),
        finishedAt: z.string().optional(),
        durationMs: z.number().optional(),
      }),
    ),
    approval: z
      .object({ versionId: z.string(), version: z.number().int(), deadline: z.string() })
      .optional()
      .openapi({ description: 'The registered version waiting for approve or reject, and until when.' }),
    outcome: z.string().optional(),
  })
  .openapi('PipelineRunProgress');

export const runDetailsSchema = runSchema
  .extend({
    stages: z.array(stageSchema).openapi({ description: 'The stages the run reached, in pipeline order.' }),
    metrics: z.record(z.string(), z.number()).nullable().openapi({ description: 'The candidate’s eval metrics.' }),
    championMetrics: z.record(z.string(), z.number()).nullable(),
    blessing: z.record(z.string(), z.unknown()).nullable(),
    model: z
      .object({
        name: z.string(),
        version: z.number().int(),
        versionId: z.string(),
        status: z.string().optional(),
        created: z.boolean().optional(),
      })
      .nullable()
      .openapi({ description: 'The model version the run registered.' }),
    deployment: z
      .object({
        name: z.string(),
        versionId: z.string(),
        revisionId: z.string(),
        previousVersionId: z.string().nullable(),
        changed: z.boolean(),
      })
      .nullable(),
    artifacts: z.array(artifactSchema),
    progress: progressSchema
      .optional()
      .openapi({ description: 'Live progress, while the run is pending, running or waiting for approval.' }),
    links: linksSchema,
  })
  .openapi('PipelineRunDetails');

export const startedSchema = z
  .object({
    run: runSchema,
    created: z.boolean().openapi({ description: 'False when the Idempotency-Key had already started this run.' }),
    links: linksSchema,
  })
  .openapi('StartedPipelineRun');

export const decisionSchema = z
  .object({ approved: z.boolean(), actor: z.string(), reason: z.string(), decidedAt: z.string() })
  .openapi('ApprovalDecision');

export function runJson(run: RunSummary): z.infer<typeof runSchema> {
  return {
    id: run.id,
    pipeline: run.pipelineName,
    pipelineVersion: run.pipelineVersion,
    pipelineVersionId: run.pipelineVersionId,
    workflowId: run.workflowId,
    temporalRunId: run.temporalRunId,
    status: run.status,
    trigger: run.trigger,
    triggeredBy: run.triggeredBy,
    idempotencyKey: run.idempotencyKey,
    startedAt: iso(run.startedAt),
    finishedAt: iso(run.finishedAt),
    durationMs: durationMs(run.startedAt, run.finishedAt),
    failure: run.failure ?? null,
    outcome: run.outcome ?? null,
    resolvedSpans: run.resolvedSpans ?? null,
  };
}

export function stageJson(stage: PipelineRunStage): z.infer<typeof stageSchema> {
  return {
    name: stage.stage,
    status: stage.status,
    attempt: stage.attempt,
    startedAt: iso(stage.startedAt),
    finishedAt: iso(stage.finishedAt),
    durationMs: durationMs(stage.startedAt, stage.finishedAt),
    outputs: stage.outputs,
    failure: stage.failure ?? null,
  };
}

/** A stage's place in the pipeline's order (unknown names last), for sorting. */
export const stageOrder = (name: string) => {
  const i = (PIPELINE_STAGES as readonly string[]).indexOf(name);
  return i < 0 ? PIPELINE_STAGES.length : i;
};

function numbers(value: unknown): Record<string, number> | null {
  const record = asRecord(value);
  if (!record) return null;
  return Object.fromEntries(Object.entries(record).filter((e): e is [string, number] => typeof e[1] === 'number'));
}

const str = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

/** What the run produced, read from its stages' recorded outputs. */
export function derived(stages: readonly PipelineRunStage[]) {
  const outputs = (name: string) => asRecord(stages.find((s) => s.stage === name && s.status !== 'failed')?.outputs);
  const evaluate = outputs('evaluate');
  const register = outputs('register');
  const deploy = outputs('deploy');

  const modelName = str(register?.modelName);
  const modelVersionId = str(register?.versionId);
  const modelVersion = register?.version;
  const model =
    modelName && modelVersionId && typeof modelVersion === 'number'
      ? {
          name: modelName,
          version: modelVersion,
          versionId: modelVersionId,
          ...(typeof register?.status === 'string' ? { status: register.status } : {}),
          ...(typeof register?.created === 'boolean' ? { created: register.created } : {}),
        }
      : null;

  const deploymentName = str(deploy?.deploymentName);
  const deploymentVersion = str(deploy?.versionId);
  const revisionId = str(deploy?.revisionId);
  const deployment =
    deploymentName && deploymentVersion && revisionId
      ? {
          name: deploymentName,
          versionId: deploymentVersion,
          revisionId,
          previousVersionId: str(deploy?.previousVersionId) ?? null,
          changed: deploy?.changed === true,
        }
      : null;

  const artifacts: z.infer<typeof artifactSchema>[] = [];
  for (const stage of stages) {
    for (const [name, value] of Object.entries(asRecord(stage.outputs) ?? {})) {
      const ref = asRecord(value);
      const uri = str(ref?.uri);
      if (!ref || !uri?.startsWith('s3://')) continue;
      artifacts.push({
        stage: stage.stage,
        name,
        uri,
        ...(typeof ref.sha256 === 'string' ? { sha256: ref.sha256 } : {}),
        ...(typeof ref.bytes === 'number' ? { bytes: ref.bytes } : {}),
        ...(typeof ref.kind === 'string' ? { kind: ref.kind } : {}),
      });
    }
  }

  return {
    metrics: numbers(evaluate?.metrics),
    championMetrics: numbers(asRecord(evaluate?.champion)?.metrics),
    blessing: asRecord(outputs('validate_model')?.blessing) ?? null,
    model,
    deployment,
    artifacts,
  };
}

export function progressJson(progress: PipelineProgress): z.infer<typeof progressSchema> {
  return {
    stage: progress.stage,
    stages: progress.stages.map((s) => ({
      name: s.name,
      state: s.state,
      ...(s.startedAt ? { startedAt: s.startedAt } : {}),
      ...(s.finishedAt ? { finishedAt: s.finishedAt } : {}),
      ...(s.seconds !== undefined ? { durationMs: Math.round(s.seconds * 1000) } : {}),
    })),
    ...(progress.approval ? { approval: { ...progress.approval } } : {}),
    ...(progress.outcome ? { outcome: progress.outcome } : {}),
  };
}
