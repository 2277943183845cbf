/**
 * Checks a pipeline definition before it is stored: its shape (the zod schema), the trainer's parameters against
 * the trainer's own schema and the label's task, and every expression against the columns the source really has.
 * The source is probed, never read in full: the first matching file's header (or Parquet metadata), the first
 * matching object, or a Postgres query wrapped in `LIMIT 0`. The expressions are then checked by the sandbox's
 * allow-list (data/expressions.ts) and bound by DuckDB over an empty table with exactly the source's columns and
 * types, so a definition that passes here does not fail later on a misspelt column or a type error.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import type { z } from 'zod';
import { DataEngine, sqlIdentifier, sqlString } from '../data/engine.js';
import { ExpressionError, validateExpression, type ValidatedExpression } from '../data/expressions.js';
import {
  dataExtension,
  ExtractError,
  exportPostgresQuery,
  listLocalFiles,
  parseSourceSpec,
  resolveObjects,
  whyNotSingleSelect,
  type DataFormat,
  type SourceSpec,
} from '../data/sources.js';
import { labelTypeProblem, resolveFeatureKind } from '../data/prepare.js';
import { SplitError, timeSplitSql } from '../data/split.js';
import { gbtParamsSchema } from '../models/trainers/gbt/params.js';
import { logisticRegressionParamsSchema, ridgeParamsSchema } from '../models/trainers/linear/index.js';
import { mlpParamsSchema } from '../models/trainers/mlp.js';
import type { ObjectSource } from '../storage/object-source.js';
import { pipelineDefinitionSchema, type PipelineDefinition } from './definition.js';
import { DomainError } from '../core/errors.js';

/** One problem with a definition: where (`features.2.expression`, `trainer.params.C`) and what. */
export interface DefinitionIssue {
  readonly path: string;
  readonly message: string;
}

export type DefinitionValidation =
  | { readonly ok: true; readonly definition: PipelineDefinition }
  | { readonly ok: false; readonly issues: readonly DefinitionIssue[] };

export interface DefinitionValidationDeps {
  /** Lists and fetches `s3://` sources; without it such a source is reported as unchecked. */
  readonly objects?: ObjectSource;
  /** The platform database, for Postgres sources without their own `url`. */
  readonly pgPool?: pg.Pool;
  /** Where a probe's scratch folder (the fetched object, DuckDB's spill) is made and removed; default: the OS's. */
  readonly scratchDir?: string;
  /** Bound on the Postgres probe, in milliseconds; default 10 000. */
  readonly queryTimeoutMs?: number;
}

/**
 * Thrown when the source could not be reached to check it (S3 or Postgres down, an object changed while it was
 * fetched): nothing is known about the definition's columns, and trying again later may succeed.
 */
export class SourceProbeError extends DomainError {
  override readonly name = 'SourceProbeError';
  constructor(problem: string, options?: ErrorOptions) {
    super('unavailable', `The definition's source could not be checked: ${problem}`, options);
  }
}

/** A column of the source as DuckDB reads it. */
export interface SourceColumn {
  readonly name: string;
  readonly type: string;
}

/**
 * Validates a definition as a user wrote it (JSON from the API, an object in code).
 *
 * Order: the schema first (nothing else is checked when it fails); then the trainer against the label's task and
 * its parameters; then the source is probed and every expression checked against its columns. Every problem found
 * in a step is reported, each at its own path.
 *
 * @throws SourceProbeError when the source cannot be reached right now (a service failure, not the definition's).
 * @example
 * const result = await validateDefinition(body, { objects: storage.objects, pgPool: storage.database.pool });
 * if (!result.ok) console.log(result.issues); // [{ path: 'features.1.expression', message: 'unknown column ...' }]
 */
export async function validateDefinition(
  input: unknown,
  deps: DefinitionValidationDeps = {},
): Promise<DefinitionValidation> {
  const parsed = pipelineDefinitionSchema.safeParse(input);
  if (!parsed.success) return { ok: false, issues: issuesFromZod(parsed.error) };
  const definition = parsed.data;

  const issues: DefinitionIssue[] = [...trainerIssues(definition)];
  issues.push(...(await columnIssues(definition, deps)));
  return issues.length === 0 ? { ok: true, definition } : { ok: false, issues };
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

function sourcePath(definition: PipelineDefinition): string {
  return 'uri' in definition.source ? 'source.uri' : 'source.query';
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
  if (split.kind === 'hash') {
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

// ---------------------------------------------------------------------------------------------------------------
// Probing the source

interface Probe {
  /** Folders the engine must be able to read. */
  readonly readableDirs: string[];
  /** Creates the empty table `t` with the source's columns and returns them. */
  createTable(engine: DataEngine): Promise<SourceColumn[]>;
}

/** Finds what to read (without reading it), or the issue that says why there is nothing. */
async function probeSource(
  definition: PipelineDefinition,
  deps: DefinitionValidationDeps,
  workDir: string,
): Promise<Probe | { issue: DefinitionIssue }> {
  const { source } = definition;
  const uriSource = 'uri' in source ? source : undefined;
  let spec: SourceSpec;
  try {
    spec = parseSourceSpec('uri' in source ? source.uri : source);
  } catch (error) {
    if (error instanceof ExtractError) return { issue: { path: sourcePath(definition), message: error.message } };
    throw error;
  }
  const requested = uriSource?.format;
  try {
    switch (spec.kind) {
      case 'file': {
        const { file, format } = await firstLocalFile(spec, requested);
        return fileProbe(file, format, [path.dirname(file)]);
      }
      case 's3': {
        if (!deps.objects) {
          return { issue: { path: 'source.uri', message: 's3:// sources cannot be checked here: no S3 client' } };
        }
        const { objects, format } = await resolveObjects(spec, deps.objects, requested).catch(rethrowUnlessExtract);
        const first = objects[0]!;
        const downloaded = await deps.objects
          .download(first, path.join(workDir, 'objects'), { extension: dataExtension(first.key) || `.${format}` })
          .catch((error: unknown) => {
            const reason = error instanceof Error ? error.message : String(error);
            throw new SourceProbeError(`could not fetch s3://${first.bucket}/${first.key}: ${reason}`, {
              cause: error,
            });
          });
        return fileProbe(downloaded.path, format, [workDir]);
      }
      case 'postgres':
        return await postgresProbe(spec, deps, workDir);
    }
  } catch (error) {
    if (!(error instanceof ExtractError)) throw error;
    const pgSource = 'kind' in source ? source : undefined;
    if (error.retryable) {
      if (pgSource?.url && error.code === 'query_failed')
        return { issue: { path: 'source.url', message: error.message } };
      throw new SourceProbeError(error.message, { cause: error });
    }
    const at =
      error.code === 'unknown_format'
        ? 'source.format'
        : pgSource && error.code === 'invalid_request'
          ? 'source.url'
          : sourcePath(definition);
    return { issue: { path: at, message: error.message } };
  }
}

/** Listing failures other than "nothing there" are service failures: the source could not be checked. */
function rethrowUnlessExtract(error: unknown): never {
  if (error instanceof ExtractError) throw error;
  const reason = error instanceof Error ? error.message : String(error);
  throw new SourceProbeError(`could not list the source: ${reason}`, { cause: error });
}

function fileProbe(file: string, format: DataFormat, readableDirs: string[]): Probe {
  const list = `[${sqlString(file)}]`;
  // As data/extract.ts reads them; DuckDB samples CSV and JSON to type the columns and reads only Parquet metadata.
  const read =
    format === 'parquet'
      ? `read_parquet(${list})`
      : format === 'csv'
        ? `read_csv(${list}, header = true, skip = 0)`
        : `read_json_auto(${list})`;
  return {
    readableDirs,
    createTable: async (engine) => {
      await engine.run(`CREATE TABLE t AS SELECT * FROM ${read} LIMIT 0`);
      return describeTable(engine);
    },
  };
}

async function postgresProbe(
  spec: Extract<SourceSpec, { kind: 'postgres' }>,
  deps: DefinitionValidationDeps,
  workDir: string,
): Promise<Probe> {
  const refused = whyNotSingleSelect(spec.query);
  if (refused) throw new ExtractError('invalid_query', spec.display, refused);
  // The newline ends a trailing `--` comment of the user's query. The export runs it read-only and maps the types.
  const probe = { ...spec, query: `SELECT * FROM (${spec.query}\n) AS q LIMIT 0` };
  const exported = await exportPostgresQuery({
    spec: probe,
    pool: deps.pgPool,
    file: path.join(workDir, 'postgres-probe.ndjson'),
    batchRows: 1,
    statementTimeoutMs: deps.queryTimeoutMs ?? 10_000,
  });
  return {
    readableDirs: [],
    createTable: async (engine) => {
      const columns = exported.columns.map((c) => `${sqlIdentifier(c.name)} ${c.duckdbType}`);
      await engine.run(`CREATE TABLE t (${columns.join(', ')})`);
      return describeTable(engine);
    },
  };
}

async function describeTable(engine: DataEngine): Promise<SourceColumn[]> {
  const rows = await engine.rows<{ column_name: string; column_type: string }>('DESCRIBE t');
  return rows.map((r) => ({ name: r.column_name, type: r.column_type }));
}

/**
 * The first file (by path) a local path, folder or glob matches, and the format of the matches.
 *
 * @throws ExtractError `source_not_found` when nothing matches; `unknown_format` when the format cannot be told.
 */
async function firstLocalFile(
  spec: Extract<SourceSpec, { kind: 'file' }>,
  requested: DataFormat | undefined,
): Promise<{ file: string; format: DataFormat }> {
  const { paths, format } = await listLocalFiles(spec, requested);
  return { file: paths[0]!, format };
}
