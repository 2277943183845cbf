import { and, desc, eq } from 'drizzle-orm';
import { artifacts, datasets, datasetSchemaVersions, type Artifact, type SchemaChangeKind } from '../schema/index.js';
import type { Database } from './database.js';
import { DomainError } from '../core/errors.js';

export interface SchemaVersionRecord {
  readonly dataset: string;
  readonly version: number;
  readonly kind: SchemaChangeKind;
  readonly actor: string;
  readonly reason: string;
  readonly artifact: Artifact;
  readonly reportArtifactId: string | null;
  readonly createdAt: Date;
}

/** Thrown when a schema change was based on a version that is no longer current (someone changed it meanwhile). */
export class SchemaVersionConflictError extends DomainError {
  override readonly name = 'SchemaVersionConflictError';
  constructor(
    readonly dataset: string,
    readonly expectedVersion: number | null,
    readonly currentVersion: number | null,
  ) {
    super(
      'conflict',
      `dataset ${dataset}: the schema is at version ${currentVersion ?? 'none'}, not ${expectedVersion ?? 'none'}; reload it and try again`,
    );
  }
}

/**
 * Datasets' versioned schemas and drift baselines. Every schema version is a row naming who made it and why; the
 * schema itself is a Schema artifact in S3.
 */
export class DatasetStore {
  constructor(private readonly db: Database) {}

  /** The schema version in force, or undefined before the first snapshot of the dataset. */
  async currentSchema(dataset: string): Promise<SchemaVersionRecord | undefined> {
    const [row] = await this.db
      .select({ version: datasetSchemaVersions, artifact: artifacts })
      .from(datasets)
      .innerJoin(
        datasetSchemaVersions,
        and(
          eq(datasetSchemaVersions.dataset, datasets.name),
          eq(datasetSchemaVersions.version, datasets.currentSchemaVersion),
        ),
      )
      .innerJoin(artifacts, eq(artifacts.id, datasetSchemaVersions.artifactId))
      .where(eq(datasets.name, dataset));
    return row ? toRecord(row.version, row.artifact) : undefined;
  }

  /** Every schema version of the dataset, newest first: the audit trail of schema changes. */
  async schemaHistory(dataset: string): Promise<SchemaVersionRecord[]> {
    const rows = await this.db
      .select({ version: datasetSchemaVersions, artifact: artifacts })
      .from(datasetSchemaVersions)
      .innerJoin(artifacts, eq(artifacts.id, datasetSchemaVersions.artifactId))
      .where(eq(datasetSchemaVersions.dataset, dataset))
      .orderBy(desc(datasetSchemaVersions.version));
    return rows.map((r) => toRecord(r.version, r.artifact));
  }

  /**
   * Makes `artifactId` the dataset's new schema version, if the current version is still `basedOnVersion`
   * (optimistic concurrency: two people accepting different changes cannot silently overwrite each other).
   * Idempotent: when the current version already holds this artifact with this kind, it is returned unchanged, so a
   * retried activity does not create a second version.
   *
   * @throws SchemaVersionConflictError when the current version moved on.
   */
  async recordSchemaVersion(input: {
    dataset: string;
    basedOnVersion: number | null;
    artifactId: string;
    kind: SchemaChangeKind;
    actor: string;
    reason: string;
    reportArtifactId?: string;
  }): Promise<SchemaVersionRecord> {
    await this.db.transaction(async (tx) => {
      await tx.insert(datasets).values({ name: input.dataset }).onConflictDoNothing();
      const [dataset] = await tx.select().from(datasets).where(eq(datasets.name, input.dataset)).for('update');
      const current = dataset?.currentSchemaVersion ?? null;
      if (current !== null) {
        const [latest] = await tx
          .select()
          .from(datasetSchemaVersions)
          .where(and(eq(datasetSchemaVersions.dataset, input.dataset), eq(datasetSchemaVersions.version, current)));
        if (latest && latest.artifactId === input.artifactId && latest.kind === input.kind) return;
      }
      if (current !== input.basedOnVersion) {
        throw new SchemaVersionConflictError(input.dataset, input.basedOnVersion, current);
      }
      const version = (current ?? 0) + 1;
      await tx.insert(datasetSchemaVersions).values({
        dataset: input.dataset,
        version,
        artifactId: input.artifactId,
        kind: input.kind,
        actor: input.actor,
        reason: input.reason,
        reportArtifactId: input.reportArtifactId ?? null,
      });
      await tx.update(datasets).set({ currentSchemaVersion: version }).where(eq(datasets.name, input.dataset));
    });
    const record = await this.currentSchema(input.dataset);
    if (!record) throw new Error(`dataset ${input.dataset}: schema version vanished after it was recorded`);
    return record;
  }

  /** The statistics artifact drift is measured against (the last snapshot that passed validation). */
  async baselineStatistics(dataset: string): Promise<Artifact | undefined> {
    const [row] = await this.db
      .select({ artifact: artifacts })
      .from(datasets)
      .innerJoin(artifacts, eq(artifacts.id, datasets.baselineStatisticsArtifactId))
      .where(eq(datasets.name, dataset));
    return row?.artifact;
  }

  /** Moves the drift baseline to this statistics artifact. Idempotent. */
  async setBaselineStatistics(dataset: string, statisticsArtifactId: string): Promise<void> {
    await this.db
      .insert(datasets)
      .values({ name: dataset, baselineStatisticsArtifactId: statisticsArtifactId })
      .onConflictDoUpdate({ target: datasets.name, set: { baselineStatisticsArtifactId: statisticsArtifactId } });
  }
}

function toRecord(row: typeof datasetSchemaVersions.$inferSelect, artifact: Artifact): SchemaVersionRecord {
  return {
    dataset: row.dataset,
    version: row.version,
    kind: row.kind,
    actor: row.actor,
    reason: row.reason,
    artifact,
    reportArtifactId: row.reportArtifactId,
    createdAt: row.createdAt,
  };
}
