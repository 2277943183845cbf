import { createHash } from 'node:crypto';
import { and, asc, desc, eq, isNull, or, sql, type SQL } from 'drizzle-orm';
import type { PipelineDefinition } from '../pipelines/definition.js';
import {
  pipelineRuns,
  pipelineRunStages,
  pipelines,
  pipelineVersions,
  type JsonProperties,
  type Pipeline,
  type PipelineRun,
  type PipelineRunStage,
  type PipelineRunStatus,
  type PipelineStageStatus,
  type PipelineVersion,
  type ResolvedSpans,
  type RunFailure,
} from '../schema/index.js';
import type { Database } from './database.js';
import type { Page } from './page.js';
import { withNotFound as withForeignKeyCheck } from './sql-errors.js';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';

/** A pipeline with its latest version. */
export type PipelineSummary = Pipeline & { latestVersion: number; latestVersionId: string; definition: JsonProperties };

/** A pipeline version with its pipeline's name. */
export type PipelineVersionRecord = PipelineVersion & { pipelineName: string };

/** A run with the name and version number of the pipeline it runs. */
export type RunSummary = PipelineRun & { pipelineName: string; pipelineVersion: number };

/** A run with its stages, in the order they started. */
export type RunDetails = RunSummary & { stages: PipelineRunStage[] };

export interface CreateRunInput {
  /** The run's id, when the caller chose it (so it can name the run before it exists); default: a random UUID. */
  runId?: string;
  pipelineVersionId: string;
  /** The Temporal workflow id; unique, so a second run of one workflow id finds the first. */
  workflowId: string;
  /** What started the run: http, schedule, new_data, drift, manual, ... */
  trigger: string;
  triggeredBy?: string;
  /** A client-supplied key: a repeated request with the same key finds the run the first one created. */
  idempotencyKey?: string;
}

export interface ListRunsOptions {
  pipelineName?: string;
  status?: PipelineRunStatus;
  /** Default 50, at most 500. */
  limit?: number;
}

/** The statuses a stage can finish in. */
export type FinishedStageStatus = Exclude<PipelineStageStatus, 'running'>;

export interface FinishStageInput {
  status: FinishedStageStatus;
  /** Replaces the stored outputs; omitted, they are kept. */
  outputs?: JsonProperties;
  failure?: RunFailure;
}

/** Thrown when a write refers to a pipeline version that does not exist. */
export class PipelineNotFoundError extends DomainError {
  override readonly name = 'PipelineNotFoundError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('not_found', message, options);
  }
}

const TERMINAL_RUN_STATUSES: ReadonlySet<PipelineRunStatus> = new Set(['succeeded', 'failed', 'cancelled']);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const runSummaryColumns = {
  run: pipelineRuns,
  pipelineName: pipelines.name,
  pipelineVersion: pipelineVersions.version,
};

/**
 * JSON with every object's keys sorted, recursively, and no whitespace: two definitions that differ only in key
 * order have the same text, so the same hash. Undefined members are dropped, as JSON.stringify (and jsonb) drop them.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(v).sort()) sorted[key] = (v as Record<string, unknown>)[key];
    return sorted;
  });
}

/** The hex sha256 of the definition's canonical JSON: the identity of a pipeline version. */
export function definitionSha256(definition: PipelineDefinition | JsonProperties): string {
  return createHash('sha256').update(canonicalJson(definition)).digest('hex');
}

/**
 * Pipeline definitions (immutable, numbered versions keyed by their hash) and their runs with per-stage progress.
 * Every write is idempotent, so an activity or request retried after its write committed repeats it harmlessly.
 */
export class PipelineStore {
  constructor(private readonly db: Database) {}

  /**
   * Stores the definition as the pipeline's next version, creating the pipeline (with the definition's description)
   * when needed. The same definition again (by canonical JSON, so key order does not matter) returns the existing
   * version with `created: false` and writes nothing. Concurrent saves of one pipeline get consecutive numbers.
   */
  async saveDefinition(
    definition: PipelineDefinition,
    actor: string,
  ): Promise<{ pipeline: Pipeline; version: PipelineVersion; created: boolean }> {
    const sha256 = definitionSha256(definition);
    const description = definition.description ?? null;
    return this.db.transaction(async (tx) => {
      await tx
        .insert(pipelines)
        .values({ name: definition.name, description })
        .onConflictDoNothing({ target: pipelines.name });
      // The row lock serialises saves of one pipeline, so max + 1 cannot be taken twice.
      const [pipeline] = await tx.select().from(pipelines).where(eq(pipelines.name, definition.name)).for('update');
      if (!pipeline) throw new Error(`pipeline ${definition.name} vanished after it was upserted`);
      const [existing] = await tx
        .select()
        .from(pipelineVersions)
        .where(and(eq(pipelineVersions.pipelineId, pipeline.id), eq(pipelineVersions.definitionSha256, sha256)));
      if (existing) return { pipeline, version: existing, created: false };

      const [next] = await tx
        .select({ version: sql<number>`coalesce(max(${pipelineVersions.version}), 0) + 1` })
        .from(pipelineVersions)
        .where(eq(pipelineVersions.pipelineId, pipeline.id));
      const [version] = await tx
        .insert(pipelineVersions)
        .values({
          pipelineId: pipeline.id,
          version: next?.version ?? 1,
          // Stored as parsed JSON so that jsonb holds what the hash was taken over (no undefined members).
          definition: JSON.parse(JSON.stringify(definition)) as JsonProperties,
          definitionSha256: sha256,
          createdBy: actor,
        })
        .returning();
      if (!version) throw new Error(`pipeline ${definition.name}: the new version was not returned`);
      const [updated] = await tx
        .update(pipelines)
        .set({ description })
        .where(eq(pipelines.id, pipeline.id))
        .returning();
      return { pipeline: updated ?? pipeline, version, created: true };
    });
  }

  /** Every pipeline, by name, with its latest version's number and definition. */
  async listPipelines(page?: Page): Promise<PipelineSummary[]> {
    const query = this.db
      .select({ pipeline: pipelines, version: pipelineVersions })
      .from(pipelines)
      .innerJoin(
        pipelineVersions,
        and(
          eq(pipelineVersions.pipelineId, pipelines.id),
          eq(
            pipelineVersions.version,
            sql`(select max(v.version) from ${pipelineVersions} v where v.pipeline_id = ${pipelines.id})`,
          ),
        ),
      )
      .orderBy(asc(pipelines.name))
      .$dynamic();
    const rows = await (page ? query.limit(page.limit).offset(page.offset) : query);
    return rows.map((r) => ({
      ...r.pipeline,
      latestVersion: r.version.version,
      latestVersionId: r.version.id,
      definition: r.version.definition,
    }));
  }

  /** The pipeline and its versions, newest first; undefined when there is no pipeline `name`. */
  async getPipeline(name: string): Promise<{ pipeline: Pipeline; versions: PipelineVersion[] } | undefined> {
    const [pipeline] = await this.db.select().from(pipelines).where(eq(pipelines.name, name));
    if (!pipeline) return undefined;
    const versions = await this.db
      .select()
      .from(pipelineVersions)
      .where(eq(pipelineVersions.pipelineId, pipeline.id))
      .orderBy(desc(pipelineVersions.version));
    return { pipeline, versions };
  }

  /** Version `version` of the pipeline, or its latest when omitted; undefined when there is none. */
  async getVersion(name: string, version?: number): Promise<PipelineVersionRecord | undefined> {
    const [row] = await this.db
      .select({ version: pipelineVersions, pipelineName: pipelines.name })
      .from(pipelineVersions)
      .innerJoin(pipelines, eq(pipelines.id, pipelineVersions.pipelineId))
      .where(and(eq(pipelines.name, name), version === undefined ? undefined : eq(pipelineVersions.version, version)))
      .orderBy(desc(pipelineVersions.version))
      .limit(1);
    return row ? { ...row.version, pipelineName: row.pipelineName } : undefined;
  }

  /** The pipeline version with this id, or undefined, also for a string that is not a UUID. */
  async getVersionById(id: string): Promise<PipelineVersionRecord | undefined> {
    if (!UUID.test(id)) return undefined;
    const [row] = await this.db
      .select({ version: pipelineVersions, pipelineName: pipelines.name })
      .from(pipelineVersions)
      .innerJoin(pipelines, eq(pipelines.id, pipelineVersions.pipelineId))
      .where(eq(pipelineVersions.id, id));
    return row ? { ...row.version, pipelineName: row.pipelineName } : undefined;
  }

  /**
   * Creates the run (status pending), or finds the one that already holds its idempotency key, workflow id or run
   * id, with `created: false`. Concurrent calls with one key create exactly one row and all get it. A run found by
   * its key is returned even when it belongs to another pipeline version: the caller decides whether that is a
   * conflict.
   *
   * @throws PipelineNotFoundError when the pipeline version does not exist.
   */
  async createRun(input: CreateRunInput): Promise<{ run: PipelineRun; created: boolean }> {
    if (!UUID.test(input.pipelineVersionId)) {
      throw new PipelineNotFoundError(`pipeline version ${input.pipelineVersionId} does not exist`);
    }
    if (input.runId !== undefined && !UUID.test(input.runId)) {
      throw new TypeError(`a run id must be a UUID, got ${JSON.stringify(input.runId)}`);
    }
    // A conflicting insert still in flight makes ON CONFLICT wait for its commit, so the lookup below sees its row;
    // the retry covers only a conflicting row deleted in between.
    for (let attempt = 0; attempt < 3; attempt++) {
      const [row] = await withNotFound(`pipeline version ${input.pipelineVersionId}`, () =>
        this.db
          .insert(pipelineRuns)
          .values({
            ...(input.runId === undefined ? {} : { id: input.runId }),
            pipelineVersionId: input.pipelineVersionId,
            workflowId: input.workflowId,
            trigger: input.trigger,
            triggeredBy: input.triggeredBy ?? null,
            idempotencyKey: input.idempotencyKey ?? null,
          })
          .onConflictDoNothing()
          .returning(),
      );
      if (row) return { run: row, created: true };
      // In order of precedence: a retried request must get the run its key made, whatever else matches.
      const keys: SQL[] = [];
      if (input.idempotencyKey !== undefined) keys.push(eq(pipelineRuns.idempotencyKey, input.idempotencyKey));
      keys.push(eq(pipelineRuns.workflowId, input.workflowId));
      if (input.runId !== undefined) keys.push(eq(pipelineRuns.id, input.runId));
      const existing = await this.db
        .select()
        .from(pipelineRuns)
        .where(or(...keys));
      for (const key of ['idempotencyKey', 'workflowId', 'id'] as const) {
        const wanted = key === 'id' ? input.runId : input[key];
        const match = wanted === undefined ? undefined : existing.find((r) => r[key] === wanted);
        if (match) return { run: match, created: false };
      }
    }
    throw new Error(`pipeline run ${input.workflowId}: the conflicting run disappeared while it was looked up`);
  }

  /** The run with its stages and pipeline; undefined when there is none (also for a string that is not a UUID). */
  async getRun(runId: string): Promise<RunDetails | undefined> {
    if (!UUID.test(runId)) return undefined;
    return this.runDetails(eq(pipelineRuns.id, runId));
  }

  /** The run of this workflow id with its stages and pipeline; undefined when the workflow is not a pipeline run. */
  async getRunByWorkflowId(workflowId: string): Promise<RunDetails | undefined> {
    return this.runDetails(eq(pipelineRuns.workflowId, workflowId));
  }

  /** Runs, newest first, optionally of one pipeline or in one status. */
  async listRuns(options: ListRunsOptions = {}): Promise<RunSummary[]> {
    const limit = Math.min(500, Math.max(1, Math.trunc(options.limit ?? 50)));
    const rows = await this.db
      .select(runSummaryColumns)
      .from(pipelineRuns)
      .innerJoin(pipelineVersions, eq(pipelineVersions.id, pipelineRuns.pipelineVersionId))
      .innerJoin(pipelines, eq(pipelines.id, pipelineVersions.pipelineId))
      .where(
        and(
          options.pipelineName === undefined ? undefined : eq(pipelines.name, options.pipelineName),
          options.status === undefined ? undefined : eq(pipelineRuns.status, options.status),
        ),
      )
      .orderBy(desc(pipelineRuns.startedAt), desc(pipelineRuns.id))
      .limit(limit);
    return rows.map(toRunSummary);
  }

  /**
   * Marks the run running under this Temporal run id, clearing any end time and failure: the first start, and also
   * a resume (a new Temporal run of the same workflow id after a failure). Undefined when there is no such run.
   */
  async markRunStarted(workflowId: string, temporalRunId: string): Promise<PipelineRun | undefined> {
    const [row] = await this.db
      .update(pipelineRuns)
      .set({ status: 'running', temporalRunId, finishedAt: null, failure: null })
      .where(eq(pipelineRuns.workflowId, workflowId))
      .returning();
    return row;
  }

  /**
   * Stores the run's resolved sliding-window spans unless it has some already, and returns the ones it keeps: the
   * first write wins, so a retried resolution or a resumed run never moves a run's window. Undefined when there is
   * no such run.
   */
  async keepResolvedSpans(workflowId: string, spans: ResolvedSpans): Promise<ResolvedSpans | undefined> {
    const [written] = await this.db
      .update(pipelineRuns)
      .set({ resolvedSpans: spans })
      .where(and(eq(pipelineRuns.workflowId, workflowId), isNull(pipelineRuns.resolvedSpans)))
      .returning({ resolvedSpans: pipelineRuns.resolvedSpans });
    if (written?.resolvedSpans) return written.resolvedSpans;
    const [kept] = await this.db
      .select({ resolvedSpans: pipelineRuns.resolvedSpans })
      .from(pipelineRuns)
      .where(eq(pipelineRuns.workflowId, workflowId));
    return kept?.resolvedSpans ?? undefined;
  }

  /**
   * Marks a run failed only while it is still pending: a workflow that did start after all (its start request
   * reached Temporal but the answer was lost) has marked it running, and keeps it so. Undefined when the run was
   * not pending.
   */
  async failPendingRun(workflowId: string, failure: RunFailure): Promise<PipelineRun | undefined> {
    const [row] = await this.db
      .update(pipelineRuns)
      .set({ status: 'failed', finishedAt: sql`now()`, failure })
      .where(and(eq(pipelineRuns.workflowId, workflowId), eq(pipelineRuns.status, 'pending')))
      .returning();
    return row;
  }

  /**
   * Sets the run's status and failure (cleared when not given). A terminal status (succeeded, failed, cancelled)
   * sets the end time, kept as first written when the same status is set again; any other status clears it.
   * Undefined when there is no such run.
   */
  async setRunStatus(
    workflowId: string,
    status: PipelineRunStatus,
    options: { failure?: RunFailure; outcome?: string } = {},
  ): Promise<PipelineRun | undefined> {
    const finishedAt = TERMINAL_RUN_STATUSES.has(status)
      ? sql`case when ${pipelineRuns.status} = ${status} and ${pipelineRuns.finishedAt} is not null
          then ${pipelineRuns.finishedAt} else now() end`
      : null;
    const [row] = await this.db
      .update(pipelineRuns)
      .set({ status, finishedAt, failure: options.failure ?? null, outcome: options.outcome ?? null })
      .where(eq(pipelineRuns.workflowId, workflowId))
      .returning();
    return row;
  }

  /**
   * Records that the stage started (attempt `attempt`): running, started now, no end, failure or outputs. Upserts
   * by (run, stage), so a retry or a resumed run restarts the same row. Undefined when the workflow is not a
   * pipeline run.
   */
  async startStage(workflowId: string, stage: string, attempt: number): Promise<PipelineRunStage | undefined> {
    const runId = await this.runIdOf(workflowId);
    if (runId === undefined) return undefined;
    const [row] = await this.db
      .insert(pipelineRunStages)
      .values({ runId, stage, status: 'running', attempt })
      .onConflictDoUpdate({
        target: [pipelineRunStages.runId, pipelineRunStages.stage],
        set: {
          status: 'running',
          attempt,
          startedAt: sql`now()`,
          finishedAt: null,
          failure: null,
          outputs: {},
        },
      })
      .returning();
    return row;
  }

  /**
   * Records how the stage finished, with its outputs or failure. Upserts by (run, stage): a stage that finished
   * without a start (cached or skipped) still gets its row. Finishing again in the same status keeps the first end
   * time. Undefined when the workflow is not a pipeline run.
   */
  async finishStage(workflowId: string, stage: string, input: FinishStageInput): Promise<PipelineRunStage | undefined> {
    const runId = await this.runIdOf(workflowId);
    if (runId === undefined) return undefined;
    const [row] = await this.db
      .insert(pipelineRunStages)
      .values({
        runId,
        stage,
        status: input.status,
        finishedAt: sql`now()`,
        outputs: input.outputs ?? {},
        failure: input.failure ?? null,
      })
      .onConflictDoUpdate({
        target: [pipelineRunStages.runId, pipelineRunStages.stage],
        set: {
          status: input.status,
          finishedAt: sql`case when ${pipelineRunStages.status} = excluded.status and ${pipelineRunStages.finishedAt} is not null
            then ${pipelineRunStages.finishedAt} else now() end`,
          ...(input.outputs === undefined ? {} : { outputs: input.outputs }),
          failure: input.failure ?? null,
        },
      })
      .returning();
    return row;
  }

  private async runIdOf(workflowId: string): Promise<string | undefined> {
    const [row] = await this.db
      .select({ id: pipelineRuns.id })
      .from(pipelineRuns)
      .where(eq(pipelineRuns.workflowId, workflowId));
    return row?.id;
  }

  private async runDetails(where: SQL): Promise<RunDetails | undefined> {
    const [row] = await this.db
      .select(runSummaryColumns)
      .from(pipelineRuns)
      .innerJoin(pipelineVersions, eq(pipelineVersions.id, pipelineRuns.pipelineVersionId))
      .innerJoin(pipelines, eq(pipelines.id, pipelineVersions.pipelineId))
      .where(where);
    if (!row) return undefined;
    const stages = await this.db
      .select()
      .from(pipelineRunStages)
      .where(eq(pipelineRunStages.runId, row.run.id))
      .orderBy(asc(pipelineRunStages.startedAt), asc(pipelineRunStages.stage));
    return { ...toRunSummary(row), stages };
  }
}

function toRunSummary(row: { run: PipelineRun; pipelineName: string; pipelineVersion: number }): RunSummary {
  return { ...row.run, pipelineName: row.pipelineName, pipelineVersion: row.pipelineVersion };
}

/** Runs a write and turns a foreign-key violation into PipelineNotFoundError naming `what`. */
function withNotFound<T>(what: string, write: () => Promise<T>): Promise<T> {
  return withForeignKeyCheck(write, (cause) => new PipelineNotFoundError(`${what} does not exist`, { cause }));
}
