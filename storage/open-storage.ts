import type { ServiceEndpoints } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { ApiKeyStore } from './api-key-store.js';
import { S3ArtifactStore } from './artifact-store.js';
import { createDatabase, type DatabaseHandle } from './database.js';
import { DatasetStore } from './dataset-store.js';
import { FeedbackStore } from './feedback-store.js';
import { DrizzleLineageStore, type LineageStore } from './lineage-store.js';
import { DrizzleMetadataStore, type MetadataStore } from './metadata-store.js';
import { S3ObjectSource } from './object-source.js';
import { PipelineStore } from './pipeline-store.js';
import { createDeploymentStore, type DeploymentStore } from './deployment-store.js';
import { createRegistryStore, type RegistryStore } from './registry-store.js';
import { MonitoringActionStore } from './monitoring-action-store.js';
import { createMonitoringStore, type MonitoringStore } from './monitoring-store.js';
import { WatchedObjectStore } from './watched-object-store.js';
import { TriggerStore } from './trigger-store.js';

/** The platform's stores, opened once per process over the resolved endpoints. */
export interface PlatformStorage {
  readonly database: DatabaseHandle;
  readonly artifacts: S3ArtifactStore;
  readonly metadata: MetadataStore;
  readonly datasets: DatasetStore;
  readonly objects: S3ObjectSource;
  /** Registered models, versions, their statuses and aliases. */
  readonly registry: RegistryStore;
  /** What each deployment serves (champion, canary, shadows) and its revision history. */
  readonly deployments: DeploymentStore;
  readonly pipelines: PipelineStore;
  /** API keys (hashes and scopes). */
  readonly apiKeys: ApiKeyStore;
  /** Monitoring windows of deployments (distances, live metrics, reports). */
  readonly monitoringWindows: MonitoringStore;
  /** What monitoring windows did: alerts and their deliveries, retrains, rollbacks. */
  readonly monitoringActions: MonitoringActionStore;
  /** Ground truth for logged predictions, by request id. */
  readonly feedback: FeedbackStore;
  /** Objects seen under the pipelines' watched prefixes (new-data triggers). */
  readonly watchedObjects: WatchedObjectStore;
  /** Trigger events (schedule actions, new data, monitoring) and whether each started a run. */
  readonly triggers: TriggerStore;
  /** Lineage reads across metadata, runs, registry and deployments. */
  readonly lineage: LineageStore;
  close(): Promise<void>;
}

/** Opens the database pool and the S3 client (lazily connected: nothing fails here if a service is briefly down). */
export function openStorage(
  endpoints: ServiceEndpoints,
  options: { logger: Logger; applicationName: string; poolSize?: number; scratchDir?: string },
): PlatformStorage {
  const database = createDatabase(endpoints.databaseUrl, {
    max: options.poolSize ?? 10,
    applicationName: options.applicationName,
    onPoolError: (error) => options.logger.warn({ err: error }, 'an idle database connection failed; it was replaced'),
  });
  const artifacts = S3ArtifactStore.fromConfig(
    endpoints.s3,
    options.scratchDir ? { spoolDir: options.scratchDir } : {},
  );
  return {
    database,
    artifacts,
    metadata: new DrizzleMetadataStore(database.db),
    datasets: new DatasetStore(database.db),
    objects: new S3ObjectSource(artifacts.client),
    registry: createRegistryStore(database.db),
    deployments: createDeploymentStore(database.db),
    pipelines: new PipelineStore(database.db),
    apiKeys: new ApiKeyStore(database.db),
    monitoringWindows: createMonitoringStore(database.db),
    monitoringActions: new MonitoringActionStore(database.db),
    feedback: new FeedbackStore(database.db),
    watchedObjects: new WatchedObjectStore(database.db),
    triggers: new TriggerStore(database.db),
    lineage: new DrizzleLineageStore(database.db),
    close: () => database.close(),
  };
}
