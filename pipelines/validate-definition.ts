/**
 * Checks a pipeline definition before it is stored: its shape (the zod schema), the trainer's parameters against
 * the trainer's own schema and the label's task, and every expression against the columns the source really has.
 * The source is probed, never read in full: the first matching file's header (or Parquet metadata), the first
 * matching object, or a Postgres query wrapped in `LIMIT 0`. The expressions are then checked by the sandbox's
 * allow-list (data/expressions.ts) and bound by DuckDB over an empty table with exactly the source's columns and
 * types, so a definition that passes here does not fail later on a misspelt column or a type error. Probing the
 * source is probe-source.ts's.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { z } from 'zod';
import { isObjectAllowed, type DataAccessPolicy } from '../data/access-policy.js';
import { DataEngine } from '../data/engine.js';
import type { ConnectionResolver } from '../data/postgres-source.js';
import { ExpressionError, validateExpression, type ValidatedExpression } from '../data/expressions.js';
import { labelTypeProblem, resolveFeatureKind } from '../data/prepare.js';
import { SplitError, timeSplitSql } from '../data/split.js';
import { gbtParamsSchema } from '../models/trainers/gbt/params.js';
import { logisticRegressionParamsSchema, ridgeParamsSchema } from '../models/trainers/linear/index.js';
import { mlpParamsSchema } from '../models/trainers/mlp/params.js';
import type { ObjectSource } from '../storage/object-source.js';
import { pipelineDefinitionSchema, type PipelineDefinition } from './definition.js';
import { probeSource, sourcePath, type SourceColumn } from './probe-source.js';

/** One problem with a definition: where (`features.2.expression`, `trainer.params.C`) and what. */
export interface DefinitionIssue {
  readonly path: string;
  readonly message: string;
}

export type DefinitionValidation =
  | { readonly ok: true; readonly definition: PipelineDefinition }
  | { readonly ok: false; readonly issues: readonly DefinitionIssue[] };

export interface DefinitionValidationDeps {
  /**
   * What sources may read (local roots, buckets, caps on files and depth); checked before the source is touched.
   * Default: nothing at all (every file and object source is refused).
   */
  readonly policy?: DataAccessPolicy;
  /** Lists and fetches `s3://` sources; without it such a source is reported as unchecked. */
  readonly objects?: ObjectSource;
  /**
   * Resolves Postgres sources' named connections (and the built-in read-only `platform` one); without it a Postgres
   * source is reported as unchecked. The platform's own pool is never used for a source.
   */
  readonly connections?: ConnectionResolver;
  /** Bound on connecting to a source database, in milliseconds; default: `queryTimeoutMs`. */
  readonly connectTimeoutMs?: number;
  /** Where a probe's scratch folder (the fetched object, DuckDB's spill) is made and removed; default: the OS's. */
  readonly scratchDir?: string;
  /** Bound on the Postgres probe, in milliseconds; default 10 000. */
  readonly queryTimeoutMs?: number;
}

/**
 * Validates a definition as a user wrote it (JSON from the API, an object in code).
 *
 * Order: the schema first (nothing else is checked when it fails); then the trainer against the label's task and
 * its parameters; then the source is probed and every expression checked against its columns. Every problem found
 * in a step is reported, each at its own path.
 *
 * @throws SourceProbeError when the source cannot be reached right now (a service failure, not the definition's).
 * @throws SourceNotAllowedError (403) when the source lies outside the data access policy; nothing of it was read.
 * @example
 * const result = await validateDefinition(body, { policy, objects: storage.objects, connections });
 * if (!result.ok) console.log(result.issues); // [{ path: 'features.1.expression', message: 'unknown column ...' }]
 */
export async function validateDefinition(
  input: unknown,
  deps: DefinitionValidationDeps = {},
): Promise<DefinitionValidation> {
  const parsed = pipelineDefinitionSchema.safeParse(input);
  if (!parsed.success) return { ok: false, issues: issuesFromZod(parsed.error) };
  const definition = parsed.data;

  const issues: DefinitionIssue[] = [...trainerIssues(definition), ...watchedPrefixIssues(definition, deps.policy)];
  issues.push(...(await columnIssues(definition, deps)));
  return issues.length === 0 ? { ok: true, definition } : { ok: false, issues };
}

/**
 * A watched prefix is read (listed, and its objects extracted) like a source: it must lie inside the data access
 * policy, checked when the definition is saved rather than found out by the first poll.
 */
function watchedPrefixIssues(definition: PipelineDefinition, policy: DataAccessPolicy | undefined): DefinitionIssue[] {
  const prefix = definition.triggers.newData?.prefix;
  if (!prefix || !policy) return [];
  const [, bucket = '', key = ''] = /^s3:\/\/([^/]+)\/(.*)$/.exec(prefix) ?? [];
  if (isObjectAllowed(policy, bucket, key)) return [];
  return [{ path: 'triggers.newData.prefix', message: `${prefix} is outside the buckets this platform may read` }];
}

// ---------------------------------------------------------------------------------------------------------------
// The schema

/**
 * zod's issues as definition issues with dotted paths. An unknown key is reported at its own path; a union that no
 * branch matched is reported with the problems of the branch that came closest (fewest problems).
 */
export function issuesFromZod(error: z.ZodError, prefix: readonly PropertyKey[] = []): DefinitionIssue[] {
  return mapIssues(error.issues, prefix);
}

type ZodIssue = z.ZodError['issues'][number];

function mapIssues(issues: readonly ZodIssue[], prefix: readonly PropertyKey[]): DefinitionIssue[] {
  return issues.flatMap((issue): DefinitionIssue[] => {
    const at = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: dotted([...at, key]), message: `unknown field ${JSON.stringify(key)}` }));
    }
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      const closest = [...issue.errors].sort((a, b) => a.length - b.length)[0]!;
      return mapIssues(closest, at);
    }
    return [{ path: dotted(at), message: issue.message }];
  });
}

function dotted(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(definition)' : path.map(String).join('.');
}

// ---------------------------------------------------------------------------------------------------------------
// The trainer

const CLASS_TASKS: readonly string[] = ['binary', 'multiclass'];

/** The trainer against the label's task, and its parameters against the trainer's own schema. */
function trainerIssues(definition: PipelineDefinition): DefinitionIssue[] {
  const { kind, params } = definition.trainer;
  const task = definition.label.task;
  let schema: z.ZodType;
  let withTask: Record<string, unknown>;
  switch (kind) {
    case 'logistic_regression':
    case 'softmax_regression':
      if (!CLASS_TASKS.includes(task)) {
        return [
          {
            path: 'trainer.kind',
            message:
              `${kind} needs a class label (label.task binary or multiclass), but label.task is ${task}; ` +
              'use ridge, mlp or gradient_boosted_trees for regression',
          },
        ];
      }
      schema = logisticRegressionParamsSchema;
      withTask = { ...params, task: kind === 'softmax_regression' ? 'multiclass' : task };
      break;
    case 'ridge':
      if (task !== 'regression') {
        return [
          {
            path: 'trainer.kind',
            message:
              `ridge needs a numeric label (label.task regression), but label.task is ${task}; ` +
              'use logistic_regression, softmax_regression, mlp or gradient_boosted_trees for classification',
          },
        ];
      }
      // Ridge has no task parameter: the label decides.
      schema = ridgeParamsSchema;
      withTask = { ...params };
      break;
    case 'mlp':
      schema = mlpParamsSchema;
      withTask = { ...params, task };
      break;
    case 'gradient_boosted_trees':
      schema = gbtParamsSchema;
      withTask = { ...params, task };
      break;
  }
  const issues: DefinitionIssue[] = [];
  if (kind !== 'ridge' && params.task !== undefined && params.task !== withTask.task) {
    issues.push({
      path: 'trainer.params.task',
      message: `the task comes from label.task (${task}); remove trainer.params.task`,
    });
  }
  const parsed = schema.safeParse(withTask);
  if (!parsed.success) {
    for (const issue of issuesFromZod(parsed.error, ['trainer', 'params'])) {
      issues.push(
        issue.message.startsWith('unknown field')
          ? { path: issue.path, message: `unknown parameter of ${kind}; it takes ${knownKeys(schema, kind)}` }
          : issue,
      );
    }
  }
  return issues;
}

/** The parameter names a trainer's (object) schema accepts, for messages; `task` is left out: the label sets it. */
function knownKeys(schema: z.ZodType, kind: string): string {
  const shape = (schema as unknown as { shape?: Record<string, unknown> }).shape;
  const keys = shape ? Object.keys(shape).filter((k) => k !== 'task') : [];
  return keys.length > 0 ? keys.join(', ') : `no parameters (${kind})`;
}

// ---------------------------------------------------------------------------------------------------------------
// Columns and expressions

/** Column types a time split accepts (data/split.ts). */
const SPLIT_TIME_TYPES = new Set([
  'DATE',
  'TIMESTAMP',
  'TIMESTAMP_S',
  'TIMESTAMP_MS',
  'TIMESTAMP_NS',
  'TIMESTAMP WITH TIME ZONE',
  'TIMESTAMPTZ',
]);
/** Column types a span accepts (data/extract.ts). */
const SPAN_TYPES = SPLIT_TIME_TYPES;

/** The source's problems, or else the problems of every expression over its columns. */
async function columnIssues(
  definition: PipelineDefinition,
  deps: DefinitionValidationDeps,
): Promise<DefinitionIssue[]> {
  const workDir = path.join(deps.scratchDir ?? os.tmpdir(), `validate-definition-${randomUUID()}`);
  let engine: DataEngine | undefined;
  try {
    await mkdir(workDir, { recursive: true });
    const probe = await probeSource(definition, deps, workDir);
    if ('issue' in probe) return [probe.issue];
    engine = await DataEngine.open({ workDir, readableDirs: probe.readableDirs, threads: 1, memoryLimit: '256MB' });
    let columns: SourceColumn[];
    try {
      columns = await probe.createTable(engine);
    } catch (error) {
      return [{ path: sourcePath(definition), message: `cannot be read: ${duckdbMessage(error)}` }];
    }
    if (columns.length === 0) return [{ path: sourcePath(definition), message: 'the source has no columns' }];
    return await expressionIssues(engine, definition, columns);
  } finally {
    engine?.close();
    await rm(workDir, { recursive: true, force: true });
  }
}

async function expressionIssues(
  engine: DataEngine,
  definition: PipelineDefinition,
  columns: readonly SourceColumn[],
): Promise<DefinitionIssue[]> {
  const issues: DefinitionIssue[] = [];
  const names = columns.map((c) => c.name);
  const available = describeColumns(columns);

  /** The expression's DuckDB type over the empty table, or undefined after recording why it has none. */
  const check = async (at: string, expression: string): Promise<string | undefined> => {
    let validated: ValidatedExpression;
    try {
      validated = await validateExpression(engine, expression, names);
    } catch (error) {
      if (!(error instanceof ExpressionError)) throw error;
      issues.push({ path: at, message: error.reason });
      return undefined;
    }
    try {
      const [row] = await engine.rows<{ column_type: string }>(`DESCRIBE SELECT ${validated.sql} AS v FROM t`);
      return row?.column_type ?? 'NULL';
    } catch (error) {
      issues.push({ path: at, message: `DuckDB cannot evaluate \`${expression}\`: ${duckdbMessage(error)}` });
      return undefined;
    }
  };

  const labelType = await check('label.expression', definition.label.expression);
  if (labelType !== undefined) {
    const problem = labelTypeProblem(definition.label.task, labelType);
    if (problem) issues.push({ path: 'label.expression', message: problem });
  }
  for (const [i, feature] of definition.features.entries()) {
    const type = await check(`features.${i}.expression`, feature.expression);
    if (type === undefined) continue;
    const problem = featureTypeProblem(feature.kind, type, feature.name);
    if (problem) issues.push({ path: `features.${i}.${feature.kind ? 'kind' : 'expression'}`, message: problem });
  }

  const { split } = definition;
  if (!split) {
    // A window's eval part is the split: a time split on the window's column, checked with the window below.
  } else if (split.kind === 'hash') {
    await check('split.key', split.key);
  } else {
    const column = findColumn(columns, split.column);
    if (!column) {
      issues.push({
        path: 'split.column',
        message: `unknown column \`${split.column}\` (the dataset has: ${available})`,
      });
    } else if (!SPLIT_TIME_TYPES.has(column.type)) {
      issues.push({
        path: 'split.column',
        message: `a time split needs a DATE or TIMESTAMP column; \`${column.name}\` is ${column.type}`,
      });
    } else {
      const cutOff = async (at: string, evalBefore: string | undefined) => {
        try {
          await timeSplitSql(engine, column.name, column.type, split.trainBefore, evalBefore);
          return true;
        } catch (error) {
          if (!(error instanceof SplitError)) throw error;
          issues.push({ path: at, message: error.message });
          return false;
        }
      };
      if ((await cutOff('split.trainBefore', undefined)) && split.evalBefore !== undefined) {
        await cutOff('split.evalBefore', split.evalBefore);
      }
    }
  }

  if (definition.span) {
    const column = findColumn(columns, definition.span.column);
    if (!column) {
      issues.push({
        path: 'span.column',
        message: `unknown column \`${definition.span.column}\` (the dataset has: ${available})`,
      });
    } else if (!SPAN_TYPES.has(column.type)) {
      issues.push({
        path: 'span.column',
        message: `a span needs a TIMESTAMP, TIMESTAMPTZ or DATE column; \`${column.name}\` is ${column.type}`,
      });
    }
    const { from, to } = definition.span;
    if (from !== undefined && to !== undefined && Date.parse(from) >= Date.parse(to)) {
      issues.push({ path: 'span.to', message: `must be after span.from (${from})` });
    }
  }

  if (definition.window) {
    const column = findColumn(columns, definition.window.column);
    if (!column) {
      issues.push({
        path: 'window.column',
        message: `unknown column \`${definition.window.column}\` (the dataset has: ${available})`,
      });
    } else if (!SPAN_TYPES.has(column.type)) {
      issues.push({
        path: 'window.column',
        message: `a window needs a TIMESTAMP, TIMESTAMPTZ or DATE column; \`${column.name}\` is ${column.type}`,
      });
    }
  }
  return issues;
}

/** A column by its exact name, else case-insensitively (as DuckDB resolves identifiers). */
function findColumn(columns: readonly SourceColumn[], name: string): SourceColumn | undefined {
  return columns.find((c) => c.name === name) ?? columns.find((c) => c.name.toLowerCase() === name.toLowerCase());
}

function describeColumns(columns: readonly SourceColumn[]): string {
  const shown = columns.slice(0, 30).map((c) => c.name);
  return columns.length > shown.length ? `${shown.join(', ')}, ... (${columns.length} in all)` : shown.join(', ');
}

function featureTypeProblem(
  kind: 'numeric' | 'categorical' | undefined,
  type: string,
  name: string,
): string | undefined {
  const resolved = resolveFeatureKind({ name, ...(kind ? { kind } : {}) }, type);
  return 'problem' in resolved ? resolved.problem : undefined;
}

/** DuckDB's message without its trailing context lines ("LINE 1: ..."). */
function duckdbMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0] ?? message;
}
