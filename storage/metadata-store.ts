import { and, asc, eq, inArray, sql } from 'drizzle-orm';
import {
  artifacts,
  associations,
  attributions,
  contexts,
  events,
  executions,
  type Artifact,
  type ArtifactState,
  type ContextType,
  type EventType,
  type Execution,
  type ExecutionState,
  type JsonProperties,
  type MetadataContext,
  type MetadataEvent,
} from '../schema/index.js';
import type { Database } from './database.js';
import { withNotFound as withForeignKeyCheck } from './sql-errors.js';
import { DomainError, type DomainErrorOptions } from '../core/errors.js';

export interface PutArtifactInput {
  /** Dataset, Statistics, Schema, Model, ... (schema `ArtifactType` lists the well-known ones). */
  type: string;
  /** Content-addressed object URI; the natural key. */
  uri: string;
  sha256?: string;
  bytes?: number;
  contentType?: string;
  properties?: JsonProperties;
  /** Omitted: `live` for a new artifact, unchanged for an existing one. */
  state?: ArtifactState;
}

export interface StartExecutionInput {
  /** The idempotency key, derived from the workflow id and stage (plus anything else that makes the work distinct). */
  externalId: string;
  /** The component that runs: ExampleGen, StatisticsGen, Trainer, ... */
  type: string;
  name?: string;
  workflowId?: string;
  temporalRunId?: string;
  stage?: string;
  properties?: JsonProperties;
}

/** The states an execution can finish in. */
export type FinishedExecutionState = Exclude<ExecutionState, 'running'>;

export interface CompleteExecutionInput {
  state: FinishedExecutionState;
  /** Merged into the stored properties (top-level keys replace). */
  properties?: JsonProperties;
}

export interface RecordEventInput {
  artifactId: string;
  executionId: string;
  type: EventType;
  /** The input or output name on the execution, for example `examples` or `model`. */
  role: string;
}

export interface PutContextInput {
  type: ContextType;
  name: string;
  properties?: JsonProperties;
}

/** The upstream graph of one artifact: what produced it, from which inputs, recursively. */
export interface Lineage {
  artifact: Artifact;
  /** The artifact itself and every artifact upstream of it, oldest first. */
  artifacts: Artifact[];
  /** The executions that produced any of those artifacts, oldest first. */
  executions: Execution[];
  /** The edges: each producing execution's outputs (within `artifacts`) and all its inputs. */
  events: MetadataEvent[];
}

/** Thrown when a write contradicts what is stored (the same URI with other content, ...); retrying cannot fix it. */
export class MetadataConflictError extends DomainError {
  override readonly name = 'MetadataConflictError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('conflict', message, options);
  }
}

/** Thrown when a write refers to an artifact, execution or context that does not exist. */
export class MetadataNotFoundError extends DomainError {
  override readonly name = 'MetadataNotFoundError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('not_found', message, options);
  }
}

/**
 * Lineage storage in the ML Metadata model. Every write is an upsert on a natural key, so an activity that is retried
 * after any failure (including one after the write committed) can repeat its writes and gets the same rows back.
 */
export interface MetadataStore {
  /**
   * Registers the artifact at `uri`, or returns the one already there. Idempotent and retriable.
   *
   * On an existing row: missing sha256/bytes/contentType are filled in, properties are merged, and an explicit
   * `state` is applied, except that `pending` never demotes a `live` artifact (a retried upload that starts with
   * `pending` finds the object already there).
   *
   * @throws MetadataConflictError when the stored sha256 differs from `input.sha256`: a content-addressed URI cannot
   *   hold two contents, so this is a bug or corruption, not something to retry.
   */
  putArtifact(input: PutArtifactInput): Promise<Artifact>;
  /** Reads one artifact by id; undefined when there is none. */
  getArtifact(id: string): Promise<Artifact | undefined>;
  /** Reads one artifact by its URI; undefined when there is none. */
  getArtifactByUri(uri: string): Promise<Artifact | undefined>;
  /**
   * Records that an execution started, keyed by `externalId`. Idempotent and retriable.
   *
   * A second call with the same `externalId` returns the existing row: a `running` one unchanged (a retried
   * activity attempt), a `complete` or `cached` one unchanged, so the caller can check `state` and reuse its outputs
   * instead of redoing the work. A `failed` or `cancelled` one is restarted: back to `running`, with the caller's
   * Temporal run id, keeping its properties.
   */
  startExecution(input: StartExecutionInput): Promise<Execution>;
  /** Reads one execution by its idempotency key; undefined when there is none. */
  getExecutionByExternalId(externalId: string): Promise<Execution | undefined>;
  /**
   * The most recent complete execution of `type` whose recorded result contains `match` (JSON containment): how a
   * stage finds earlier work with the same inputs (an extraction with the same source fingerprint, say).
   */
  findCompletedExecution(type: string, match: JsonProperties): Promise<Execution | undefined>;
  /**
   * Finishes a running execution: sets its state and `finishedAt`, merges `properties`. Idempotent and retriable:
   * finishing again in the same state returns the stored row unchanged (its first `finishedAt` is kept).
   *
   * @throws MetadataNotFoundError when there is no execution `id`.
   * @throws MetadataConflictError when it already finished in another state (complete, then failed).
   */
  completeExecution(id: string, input: CompleteExecutionInput): Promise<Execution>;
  /**
   * Links an artifact to an execution as one of its inputs or outputs. Idempotent on
   * (artifactId, executionId, type, role): recording the same event twice returns the same row.
   *
   * @throws MetadataNotFoundError when the artifact or the execution does not exist.
   */
  recordEvent(input: RecordEventInput): Promise<MetadataEvent>;
  /** Creates the context (type, name), or returns the existing one with `properties` merged in. Idempotent. */
  putContext(input: PutContextInput): Promise<MetadataContext>;
  /**
   * Puts an artifact in a context (a pipeline, a run, an experiment). Idempotent.
   *
   * @throws MetadataNotFoundError when the context or the artifact does not exist.
   */
  attributeArtifact(contextId: string, artifactId: string): Promise<void>;
  /**
   * Puts an execution in a context. Idempotent.
   *
   * @throws MetadataNotFoundError when the context or the execution does not exist.
   */
  associateExecution(contextId: string, executionId: string): Promise<void>;
  /**
   * The full upstream lineage of an artifact: the executions that produced it, their input artifacts, the
   * executions that produced those, and so on to the raw data. Read-only; undefined when the artifact does not
   * exist. Cycles (an execution that reads what it writes) terminate because each artifact is visited once.
   *
   * @example
   * // Which data and which code produced the model serving now?
   * const graph = await store.lineage(modelArtifactId);
   */
  lineage(artifactId: string): Promise<Lineage | undefined>;
}

const restartable = sql`${executions.state} in ('failed', 'cancelled')`;

/**
 * The MetadataStore on Postgres; each guarantee documented on the interface rests on a unique constraint in
 * schema/metadata.ts. Holds nothing but the database, so one instance per process is enough.
 */
export class DrizzleMetadataStore implements MetadataStore {
  constructor(private readonly db: Database) {}

  async putArtifact(input: PutArtifactInput): Promise<Artifact> {
    const [row] = await this.db
      .insert(artifacts)
      .values({
        type: input.type,
        uri: input.uri,
        sha256: input.sha256,
        bytes: input.bytes,
        contentType: input.contentType,
        properties: input.properties ?? {},
        state: input.state ?? 'live',
      })
      .onConflictDoUpdate({
        target: artifacts.uri,
        set: {
          sha256: sql`coalesce(${artifacts.sha256}, excluded.sha256)`,
          bytes: sql`coalesce(${artifacts.bytes}, excluded.bytes)`,
          contentType: sql`coalesce(${artifacts.contentType}, excluded.content_type)`,
          properties: sql`${artifacts.properties} || excluded.properties`,
          ...(input.state === undefined
            ? {}
            : {
                state: sql`case when excluded.state = 'pending' and ${artifacts.state} = 'live'
                  then ${artifacts.state} else excluded.state end`,
              }),
        },
        setWhere: sql`${artifacts.sha256} is null or excluded.sha256 is null or ${artifacts.sha256} = excluded.sha256`,
      })
      .returning();
    if (row) return row;
    const existing = await this.getArtifactByUri(input.uri);
    throw new MetadataConflictError(
      `artifact ${input.uri} is registered with sha256 ${existing?.sha256 ?? '?'}, not ${input.sha256 ?? '?'}`,
    );
  }

  async getArtifact(id: string): Promise<Artifact | undefined> {
    const [row] = await this.db.select().from(artifacts).where(eq(artifacts.id, id));
    return row;
  }

  async getArtifactByUri(uri: string): Promise<Artifact | undefined> {
    const [row] = await this.db.select().from(artifacts).where(eq(artifacts.uri, uri));
    return row;
  }

  async startExecution(input: StartExecutionInput): Promise<Execution> {
    const [row] = await this.db
      .insert(executions)
      .values({
        externalId: input.externalId,
        type: input.type,
        name: input.name,
        workflowId: input.workflowId,
        temporalRunId: input.temporalRunId,
        stage: input.stage,
        properties: input.properties ?? {},
        state: 'running',
      })
      .onConflictDoUpdate({
        target: executions.externalId,
        set: {
          state: sql`case when ${restartable} then 'running' else ${executions.state} end`,
          temporalRunId: sql`case when ${restartable} then excluded.temporal_run_id else ${executions.temporalRunId} end`,
          startedAt: sql`case when ${restartable} then now() else ${executions.startedAt} end`,
          finishedAt: sql`case when ${restartable} then null else ${executions.finishedAt} end`,
        },
      })
      .returning();
    // An upsert with an unconditional DO UPDATE always returns its row.
    return row!;
  }

  async findCompletedExecution(type: string, match: JsonProperties): Promise<Execution | undefined> {
    const [row] = await this.db
      .select()
      .from(executions)
      .where(
        and(
          eq(executions.type, type),
          eq(executions.state, 'complete'),
          sql`${executions.properties} @> ${JSON.stringify({ result: match })}::jsonb`,
        ),
      )
      .orderBy(sql`${executions.finishedAt} desc nulls last`)
      .limit(1);
    return row;
  }

  async getExecutionByExternalId(externalId: string): Promise<Execution | undefined> {
    const [row] = await this.db.select().from(executions).where(eq(executions.externalId, externalId));
    return row;
  }

  async completeExecution(id: string, input: CompleteExecutionInput): Promise<Execution> {
    const [row] = await this.db
      .update(executions)
      .set({
        state: input.state,
        finishedAt: sql`now()`,
        properties: sql`${executions.properties} || ${JSON.stringify(input.properties ?? {})}::jsonb`,
      })
      .where(and(eq(executions.id, id), eq(executions.state, 'running')))
      .returning();
    if (row) return row;
    const [existing] = await this.db.select().from(executions).where(eq(executions.id, id));
    if (!existing) throw new MetadataNotFoundError(`execution ${id} does not exist`);
    if (existing.state === input.state) return existing;
    throw new MetadataConflictError(
      `execution ${id} already finished as ${existing.state}, cannot mark ${input.state}`,
    );
  }

  async recordEvent(input: RecordEventInput): Promise<MetadataEvent> {
    const [row] = await withNotFound(`artifact ${input.artifactId} or execution ${input.executionId}`, () =>
      this.db
        .insert(events)
        .values(input)
        .onConflictDoUpdate({
          target: [events.artifactId, events.executionId, events.type, events.role],
          // A no-op update, so that RETURNING yields the existing row in the same statement.
          set: { role: sql`excluded.role` },
        })
        .returning(),
    );
    return row!;
  }

  async putContext(input: PutContextInput): Promise<MetadataContext> {
    const [row] = await this.db
      .insert(contexts)
      .values({ type: input.type, name: input.name, properties: input.properties ?? {} })
      .onConflictDoUpdate({
        target: [contexts.type, contexts.name],
        set: { properties: sql`${contexts.properties} || excluded.properties` },
      })
      .returning();
    return row!;
  }

  async attributeArtifact(contextId: string, artifactId: string): Promise<void> {
    await withNotFound(`context ${contextId} or artifact ${artifactId}`, () =>
      this.db.insert(attributions).values({ contextId, artifactId }).onConflictDoNothing(),
    );
  }

  async associateExecution(contextId: string, executionId: string): Promise<void> {
    await withNotFound(`context ${contextId} or execution ${executionId}`, () =>
      this.db.insert(associations).values({ contextId, executionId }).onConflictDoNothing(),
    );
  }

  async lineage(artifactId: string): Promise<Lineage | undefined> {
    const root = await this.getArtifact(artifactId);
    if (!root) return undefined;
    const upstream = await this.db.execute<{ artifact_id: string }>(sql`
      with recursive upstream(artifact_id) as (
        select ${artifactId}::uuid
        union
        select i.artifact_id
        from upstream u
        join ${events} o on o.artifact_id = u.artifact_id and o.type = 'output'
        join ${events} i on i.execution_id = o.execution_id and i.type = 'input'
      )
      select artifact_id from upstream
    `);
    const artifactIds = upstream.rows.map((r) => r.artifact_id);
    const outputEvents = await this.db
      .select()
      .from(events)
      .where(and(eq(events.type, 'output'), inArray(events.artifactId, artifactIds)));
    const executionIds = [...new Set(outputEvents.map((e) => e.executionId))];
    if (executionIds.length === 0) return { artifact: root, artifacts: [root], executions: [], events: [] };
    const [inputEvents, producers, upstreamArtifacts] = await Promise.all([
      this.db
        .select()
        .from(events)
        .where(and(eq(events.type, 'input'), inArray(events.executionId, executionIds))),
      this.db
        .select()
        .from(executions)
        .where(inArray(executions.id, executionIds))
        .orderBy(asc(executions.startedAt), asc(executions.id)),
      this.db
        .select()
        .from(artifacts)
        .where(inArray(artifacts.id, artifactIds))
        .orderBy(asc(artifacts.createdAt), asc(artifacts.id)),
    ]);
    return {
      artifact: root,
      artifacts: upstreamArtifacts,
      executions: producers,
      events: [...outputEvents, ...inputEvents],
    };
  }
}

/** Runs a write and turns a foreign-key violation into MetadataNotFoundError naming `what`. */
function withNotFound<T>(what: string, write: () => Promise<T>): Promise<T> {
  return withForeignKeyCheck(write, (cause) => new MetadataNotFoundError(`${what} does not exist`, { cause }));
}
