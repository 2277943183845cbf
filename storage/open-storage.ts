import type { ServiceEndpoints } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { ApiKeyStore } from './api-key-store.js';
import { S3ArtifactStore } from './artifact-store.js';
import { createDatabase, type DatabaseHandle } from './database.js';
import { DatasetStore } from './dataset-store.js';
import { DrizzleMetadataStore, type MetadataStore } from './metadata-store.js';
import { S3ObjectSource } from './object-source.js';
import { PipelineStore } from './pipeline-store.js';
import { createDeploymentStore, type DeploymentStore } from './deployment-store.js';
import { createRegistryStore, type RegistryStore } from './registry-store.js';

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
    close: () => database.close(),
  };
}
