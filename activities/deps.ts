import type pg from 'pg';
import type { Logger } from '../core/logger.js';
import type { ArtifactStore } from '../storage/artifact-store.js';
import type { DatasetStore } from '../storage/dataset-store.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import type { ObjectSource } from '../storage/object-source.js';
import type { PipelineStore } from '../storage/pipeline-store.js';
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
  /** The platform database's pool: Postgres extraction sources without their own URL query it. */
  readonly pgPool: pg.Pool;
  /** Worker-local scratch folder: per-activity work folders and the download cache live under it. */
  readonly scratchDir: string;
  readonly logger: Logger;
}
