import type { Client } from '@temporalio/client';
import type { PipelineRunnerDeps } from '../pipelines/runs.js';
import type pg from 'pg';
import type { Logger } from '../core/logger.js';
import type { DataAccessPolicy } from '../data/access-policy.js';
import type { ConnectionResolver } from '../data/postgres-source.js';
import type { ArtifactStore } from '../storage/artifact-store.js';
import type { DatasetStore } from '../storage/dataset-store.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import type { ObjectSource } from '../storage/object-source.js';
import type { PipelineStore } from '../storage/pipeline-store.js';
import type { PredictionLogWarehouse } from '../storage/prediction-log-warehouse.js';
import type { DeploymentStore } from '../storage/deployment-store.js';
import type { RegistryStore } from '../storage/registry-store.js';

/** What activities may touch. Built by the worker process from real services; tests hand in the test stack's. */
export interface ActivityDeps {
  readonly artifacts: ArtifactStore;
  readonly metadata: MetadataStore;
  readonly datasets: DatasetStore;
  /** Reads objects of any bucket (extraction sources), as opposed to the content-addressed artifact store. */
  readonly objects: ObjectSource;
  /** Pipeline definitions and runs: stage activities record their progress in the run they belong to. */
  readonly pipelines: PipelineStore;
  /** Model registry: registered versions, their statuses and aliases. */
  readonly registry: RegistryStore;
  /** Deployments: what each serves (champion, canary, shadows), changed by the deploy and rollout activities. */
  readonly deployments: DeploymentStore;
  /** The platform database's pool (the platform's own queries; never a source's, which go through `dataAccess`). */
  readonly pgPool: pg.Pool;
  /**
   * What extraction sources may read (checked again here, after the API's check), and how named Postgres
   * connections are resolved: by name, at run time, so no secret is in a workflow's input or history.
   */
  readonly dataAccess: {
    readonly policy: DataAccessPolicy;
    readonly connections: ConnectionResolver;
    /** Bound on connecting to a source database, ms; default 10 000. */
    readonly connectTimeoutMs?: number;
    /** Bound on each statement of a source query, ms; default 300 000. */
    readonly statementTimeoutMs?: number;
  };
  /**
   * Temporal as a client, for activities that start or signal workflows (triggers start pipeline runs through the
   * same path as the API) or manage schedules. Absent in processes that only run data stages.
   */
  readonly temporal?: TemporalAccess;
  /**
   * The serving-log warehouse (Parquet in S3) where expired prediction-log partitions are exported. Absent in
   * processes that do not run the prediction-log maintenance.
   */
  readonly predictionLogWarehouse?: PredictionLogWarehouse;
  /** Worker-local scratch folder: per-activity work folders and the download cache live under it. */
  readonly scratchDir: string;
  readonly logger: Logger;
}

export interface TemporalAccess {
  readonly client: Client;
  /** The main task queue: pipeline workflows and their non-training stages. */
  readonly taskQueue: string;
  readonly trainingTaskQueue: string;
}

/** The Temporal client of an activity's deps; a worker built without one cannot run the activities that need it. */
export function temporalOf(deps: ActivityDeps): TemporalAccess {
  if (!deps.temporal) throw new Error('this worker was built without a Temporal client (ActivityDeps.temporal)');
  return deps.temporal;
}

/**
 * What the trigger path (pipelines/triggers.ts) needs, from an activity's deps: the runner starts runs exactly as the
 * API does, through this worker's Temporal client.
 */
export function runnerOf(deps: ActivityDeps): PipelineRunnerDeps {
  const temporal = temporalOf(deps);
  return {
    client: temporal.client,
    pipelines: deps.pipelines,
    taskQueue: temporal.taskQueue,
    trainingTaskQueue: temporal.trainingTaskQueue,
  };
}
