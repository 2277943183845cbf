/**
 * The pipeline definition: declared once (a TypeScript object or JSON through the API), validated here, stored and
 * versioned in Postgres (pipeline_versions, keyed by the definition's sha256). The `trainingPipeline` workflow runs
 * one version of it; nothing in a run is read from anywhere else, so a run is reproducible from its version.
 */
// zod as @hono/zod-openapi extends it: zod 4 attaches `.openapi()` when a schema is created, so the API can document
// this schema only if it was built with the extended zod, whichever module happens to load first.
import { z } from '@hono/zod-openapi';
import { CONNECTION_NAME_PATTERN } from '../data/postgres-source.js';
import { prepareSpecSchema } from '../data/prepare.js';
import { TRAINER_KINDS, type TrainerKind } from '../models/training-job.js';

export const PIPELINE_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const pipelineName = z
  .string()
  .regex(PIPELINE_NAME_PATTERN, 'use lowercase letters, digits, - and _ (at most 63), starting with a letter or digit');

/** Metrics the evaluator reports; which exist depends on the label's task. */
export const CLASSIFICATION_METRICS = ['auc', 'log_loss', 'accuracy', 'precision', 'recall', 'f1', 'brier'] as const;
export const REGRESSION_METRICS = ['rmse', 'mae', 'r2'] as const;
export const METRIC_NAMES = [...CLASSIFICATION_METRICS, ...REGRESSION_METRICS] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

/** Metrics where lower is better; every other metric is better when higher. */
export const LOWER_IS_BETTER: ReadonlySet<MetricName> = new Set(['log_loss', 'brier', 'rmse', 'mae']);

const isoDate = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'an ISO 8601 date or timestamp');

const sourceSchema = z.union([
  z.strictObject({
    /** A local path or glob, `file://...`, or `s3://bucket/prefix/*.parquet`. */
    uri: z.string().min(1).max(2000),
    format: z.enum(['csv', 'parquet', 'json']).optional(),
  }),
  z.strictObject({
    kind: z.literal('postgres'),
    query: z.string().min(1).max(100_000),
    /** A named connection (`/v1/connections`); default: the platform database as its read-only role. */
    connection: z
      .string()
      .regex(CONNECTION_NAME_PATTERN, 'expected a connection name (lowercase letters, digits, - and _)')
      .optional(),
    /** Refused: a URL would carry its password into the definition, the API's answers and workflow histories. */
    url: z
      .unknown()
      .refine((v) => v === undefined, {
        message:
          'a database URL is not accepted in a definition (its password would be stored and shown); create a ' +
          'connection (POST /v1/connections, admin scope) and name it in source.connection',
      })
      .optional()
      .openapi({ deprecated: true, description: 'Refused; use `connection`.' }),
  }),
]);

/**
 * A stored definition as the API shows it: a `source.url` saved before URLs were refused loses its password.
 */
export function redactDefinition<T>(definition: T): T {
  const source = (definition as { source?: { url?: unknown } } | null)?.source;
  if (!source || typeof source.url !== 'string') return definition;
  let url: string;
  try {
    const parsed = new URL(source.url);
    parsed.password = parsed.password ? 'redacted' : '';
    url = parsed.toString();
  } catch {
    url = '(redacted)';
  }
  return { ...definition, source: { ...source, url } };
}

const spanSchema = z.strictObject({
  column: z.string().min(1),
  from: isoDate.optional(),
  to: isoDate.optional(),
});

const thresholdSchema = z
  .strictObject({
    metric: z.enum(METRIC_NAMES),
    /** The candidate passes when its metric is at least `min` and at most `max`. */
    min: z.number().finite().optional(),
    max: z.number().finite().optional(),
  })
  .refine((t) => t.min !== undefined || t.max !== undefined, 'give min, max or both');

const championComparisonSchema = z.strictObject({
  metric: z.enum(METRIC_NAMES),
  /** Default: from the metric (lower for log loss, Brier, RMSE, MAE; higher otherwise). */
  direction: z.enum(['higher', 'lower']).optional(),
  /**
   * How much better than the champion (both evaluated on this run's eval data) the candidate must be, in the
   * metric's units: 0.001 means "at least 0.001 better"; a negative value allows that much regression.
   */
  minImprovement: z.number().finite().default(0),
});

export const pipelineDefinitionSchema = z
  .strictObject({
    name: pipelineName,
    description: z.string().max(2000).optional(),
    /** The dataset its snapshots, statistics and schema versions belong to; default: the pipeline's name. */
    dataset: pipelineName.optional(),
    source: sourceSchema,
    /** Extract only rows whose `column` lies in [from, to). */
    span: spanSchema.optional(),
    label: prepareSpecSchema.shape.label,
    features: prepareSpecSchema.shape.features,
    split: prepareSpecSchema.shape.split,
    prepare: prepareSpecSchema.shape.options,
    trainer: z.strictObject({
      kind: z.enum(TRAINER_KINDS as [TrainerKind, ...TrainerKind[]]),
      /** The trainer's hyperparameters; checked against the trainer's own schema (unknown keys are errors). */
      params: z.record(z.string(), z.unknown()).default({}),
      /** Iterations (epochs for the MLP) between checkpoints. */
      checkpointEvery: z.number().int().min(1).max(100_000).default(10),
    }),
    evaluation: z
      .strictObject({
        /** Features whose values define slices; metrics are also reported per value (top values, at most 50). */
        slices: z.array(z.string()).max(20).default([]),
        /** Decision threshold of binary classifiers for accuracy, precision, recall and F1. */
        threshold: z.number().gt(0).lt(1).default(0.5),
        /** Smallest slice reported; smaller slices are counted but not scored. */
        minSliceRows: z.number().int().min(1).default(100),
      })
      .prefault({}),
    validation: z
      .strictObject({
        thresholds: z.array(thresholdSchema).max(20).default([]),
        /** Compare with the champion re-evaluated on this run's eval data; absent: absolute thresholds only. */
        champion: championComparisonSchema.optional(),
        infra: z
          .strictObject({
            /** The model must load in a fresh session and answer a sample request within this bound. */
            maxLatencyMs: z.number().int().min(1).max(600_000).default(2000),
            sampleRows: z.number().int().min(1).max(10_000).default(100),
          })
          .prefault({}),
      })
      .prefault({}),
    /** The registered model the versions go to; default: the pipeline's name. */
    model: z.strictObject({ name: pipelineName }).optional(),
    deployment: z
      .strictObject({
        /** automatic: a blessed version becomes the champion at once; approval: it waits for approve or reject. */
        policy: z.enum(['automatic', 'approval']).default('automatic'),
        /** How long an approval may take before the run gives up (the version stays registered, not deployed). */
        approvalTimeoutSeconds: z
          .number()
          .int()
          .min(1)
          .max(30 * 24 * 3600)
          .default(24 * 3600),
        /** The deployment (what serving addresses); default: the model's name. */
        name: pipelineName.optional(),
      })
      .prefault({}),
    /** How often a stage is tried before the run fails (and can be resumed from that stage). */
    retry: z
      .strictObject({
        maximumAttempts: z.number().int().min(1).max(100).default(5),
        initialIntervalSeconds: z.number().min(0.1).max(3600).default(1),
        maximumIntervalSeconds: z.number().min(1).max(3600).default(30),
      })
      .prefault({}),
  })
  .superRefine((definition, ctx) => {
    const featureNames = new Set(definition.features.map((f) => f.name));
    for (const [i, slice] of definition.evaluation.slices.entries()) {
      if (!featureNames.has(slice)) {
        ctx.addIssue({
          code: 'custom',
          path: ['evaluation', 'slices', i],
          message: `${JSON.stringify(slice)} is not a feature of this pipeline`,
        });
      }
    }
    const task = definition.label.task;
    const metrics: readonly string[] = task === 'regression' ? REGRESSION_METRICS : CLASSIFICATION_METRICS;
    const checkMetric = (metric: string, path: (string | number)[]) => {
      if (!metrics.includes(metric)) {
        ctx.addIssue({
          code: 'custom',
          path,
          message: `${metric} is not reported for a ${task} label; use one of ${metrics.join(', ')}`,
        });
      }
    };
    for (const [i, t] of definition.validation.thresholds.entries())
      checkMetric(t.metric, ['validation', 'thresholds', i, 'metric']);
    if (definition.validation.champion)
      checkMetric(definition.validation.champion.metric, ['validation', 'champion', 'metric']);
  });

/** What a user writes (defaults optional). */
export type PipelineDefinitionInput = z.input<typeof pipelineDefinitionSchema>;
/** A validated definition, defaults filled in: what is stored and what runs. */
export type PipelineDefinition = z.output<typeof pipelineDefinitionSchema>;

export { datasetOf, deploymentNameOf, modelNameOf } from './names.js';
