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

/** Longest sliding window, in days (either part). */
const MAX_WINDOW_DAYS = 36_500;

/**
 * A sliding window over the source, resolved to concrete spans when a run starts (pipelines/window.ts): the window
 * ends at the newest `column` value in the source (`relativeTo: 'data'`, the newest row included) or at the run's
 * start (`'trigger'`). With an eval part, eval is the latest `evalDays` and train the `trainDays` before it, and the
 * two replace `split` with a time split; without one, train is the whole window and `split` divides it.
 */
const windowSchema = z
  .strictObject({
    /** A DATE or TIMESTAMP column of the source. */
    column: z.string().min(1),
    trainDays: z.number().positive().max(MAX_WINDOW_DAYS).optional(),
    trainSeconds: z
      .number()
      .int()
      .min(1)
      .max(MAX_WINDOW_DAYS * 86_400)
      .optional(),
    evalDays: z.number().positive().max(MAX_WINDOW_DAYS).optional(),
    evalSeconds: z
      .number()
      .int()
      .min(1)
      .max(MAX_WINDOW_DAYS * 86_400)
      .optional(),
    relativeTo: z.enum(['data', 'trigger']).default('data'),
  })
  .superRefine((w, ctx) => {
    if ((w.trainDays === undefined) === (w.trainSeconds === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['trainDays'], message: 'give trainDays or trainSeconds (one of them)' });
    }
    if (w.evalDays !== undefined && w.evalSeconds !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['evalSeconds'], message: 'give evalDays or evalSeconds, not both' });
    }
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

const fraction = z.number().min(0).max(1);

/** When a run starts without an HTTP call: new objects under a watched S3 prefix (schedules live in Temporal). */
const triggersSchema = z.strictObject({
  /**
   * Let a trigger (schedule, new data, monitoring) start a run while another run of this pipeline is pending or
   * running. Default false: the trigger is recorded as skipped, with the run it found.
   */
  allowOverlap: z.boolean().default(false),
  newData: z
    .strictObject({
      /** `s3://bucket/prefix` to watch; default: the source's own prefix, when the source is in S3. */
      prefix: z
        .string()
        .regex(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,62}\/[^*?[\]{}]*$/, 'expected s3://bucket/prefix (no wildcards)')
        .optional(),
      /** A burst of objects within this many seconds of the last one starts one run. */
      settleSeconds: z.number().min(0).max(3600).default(10),
      /** Polling fallback: list the prefix this often; absent: bucket notifications only. */
      pollEverySeconds: z.number().int().min(5).max(86_400).optional(),
    })
    .optional(),
});

/** Default of `monitoring.retrain.cooldownSeconds`: 6 hours, longer than the default (hourly) interval. */
export const DEFAULT_RETRAIN_COOLDOWN_SECONDS = 6 * 3600;

const featureThresholdSchema = z.strictObject({ skew: fraction.optional(), drift: fraction.optional() });

/** Watching what a deployment serves: distances per feature, live and estimated performance, and what a breach does. */
const monitoringSchema = z.strictObject({
  /** How often a window is computed (a Temporal Schedule per deployment). */
  everySeconds: z
    .number()
    .int()
    .min(10)
    .max(7 * 86_400)
    .default(3600),
  /** How much serving history one window covers; default: `everySeconds`. */
  windowSeconds: z
    .number()
    .int()
    .min(10)
    .max(30 * 86_400)
    .optional(),
  /** A window with fewer logged predictions is reported but raises nothing. */
  minRows: z.number().int().min(1).max(10_000_000).default(100),
  /**
   * Distances above which a feature is flagged: Jensen-Shannon divergence (numeric) or L-infinity distance
   * (categorical), both in [0, 1]. `skew`: serving vs the training snapshot; `drift`: this window vs the previous.
   */
  thresholds: z
    .strictObject({
      skew: fraction.default(0.1),
      drift: fraction.default(0.1),
      features: z.record(z.string(), featureThresholdSchema).default({}),
      /**
       * The predictions' own distribution (predicted classes or values) against the training labels (skew) and the
       * previous window (drift). Absent: reported, never breached (a classifier whose decision threshold is not at
       * the base rate predicts the classes in other shares than the labels have, by design).
       */
      prediction: featureThresholdSchema.optional(),
    })
    .prefault({}),
  /** POST a signed JSON body (HMAC-SHA256 of the body in `x-mlops-signature`) when a window breaches. */
  alert: z
    .strictObject({
      url: z.url({ protocol: /^https?$/ }),
      /** The variable holding the shared secret, read by the worker at delivery time (never stored here). */
      secretEnv: z
        .string()
        .regex(/^MLOPS_ALERT_[A-Z0-9_]{1,64}$/, 'expected a variable name like MLOPS_ALERT_SECRET')
        .optional(),
    })
    .optional(),
  /** Start this pipeline when a window breaches; one run per incident within the cooldown. */
  retrain: z
    .strictObject({
      /**
       * No run for a window that ends at most this long after the end of the window that started the last one
       * (measured on window ends, not on when windows are computed). At least `everySeconds`, so the next window of
       * the same incident never starts a second run; default 6 hours, a few windows of an hourly monitor.
       */
      cooldownSeconds: z
        .number()
        .int()
        .min(0)
        .max(30 * 86_400)
        .default(DEFAULT_RETRAIN_COOLDOWN_SECONDS),
    })
    .optional(),
  /** Serve the previous champion again when a live metric crosses its floor on enough labelled rows. */
  rollback: z
    .strictObject({
      metric: z.enum(METRIC_NAMES),
      /** The floor for a higher-is-better metric (AUC, accuracy, ...). */
      min: z.number().finite().optional(),
      /** The ceiling for a lower-is-better one (log loss, RMSE, ...). */
      max: z.number().finite().optional(),
      minLabelledRows: z.number().int().min(1).max(10_000_000).default(100),
    })
    .refine((r) => r.min !== undefined || r.max !== undefined, 'give min, max or both')
    .optional(),
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
    /** Train (and evaluate) on the latest days of the source, resolved at each run's start; excludes `span`. */
    window: windowSchema.optional(),
    label: prepareSpecSchema.shape.label,
    features: prepareSpecSchema.shape.features,
    /** Required, unless `window` has an eval part (which is the split then). */
    split: prepareSpecSchema.shape.split.optional(),
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
    triggers: triggersSchema.prefault({}),
    /** Absent: the deployment is not monitored. */
    monitoring: monitoringSchema.optional(),
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
    if (definition.monitoring?.rollback)
      checkMetric(definition.monitoring.rollback.metric, ['monitoring', 'rollback', 'metric']);
    const retrain = definition.monitoring?.retrain;
    if (retrain && definition.monitoring && retrain.cooldownSeconds < definition.monitoring.everySeconds) {
      ctx.addIssue({
        code: 'custom',
        path: ['monitoring', 'retrain', 'cooldownSeconds'],
        message:
          `${retrain.cooldownSeconds} s is shorter than monitoring.everySeconds (${definition.monitoring.everySeconds} ` +
          's): the next window of the same incident would start another run; give at least the interval',
      });
    }
    for (const name of Object.keys(definition.monitoring?.thresholds.features ?? {})) {
      if (!featureNames.has(name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['monitoring', 'thresholds', 'features', name],
          message: `${JSON.stringify(name)} is not a feature of this pipeline`,
        });
      }
    }
    if (definition.window && definition.span) {
      ctx.addIssue({
        code: 'custom',
        path: ['window'],
        message: 'window and span are mutually exclusive (a window resolves its span at each run); remove one',
      });
    }
    const windowEval = definition.window?.evalDays !== undefined || definition.window?.evalSeconds !== undefined;
    if (windowEval && definition.split) {
      ctx.addIssue({
        code: 'custom',
        path: ['split'],
        message: "window's eval part (the latest evalDays) is the split; remove split or the window's eval part",
      });
    } else if (!windowEval && !definition.split) {
      ctx.addIssue({
        code: 'custom',
        path: ['split'],
        message: 'required: a hash or time split (or a window with evalDays, which splits by time)',
      });
    }
    const newData = definition.triggers.newData;
    if (newData && !newData.prefix && !('uri' in definition.source && definition.source.uri.startsWith('s3://'))) {
      ctx.addIssue({
        code: 'custom',
        path: ['triggers', 'newData', 'prefix'],
        message: 'give the s3://bucket/prefix to watch (the source is not in S3)',
      });
    }
  });

/** What a user writes (defaults optional). */
export type PipelineDefinitionInput = z.input<typeof pipelineDefinitionSchema>;
/** A validated definition, defaults filled in: what is stored and what runs. */
export type PipelineDefinition = z.output<typeof pipelineDefinitionSchema>;

export { datasetOf, deploymentNameOf, modelNameOf } from './names.js';
