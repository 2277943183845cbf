import type { Logger } from '../core/logger.js';
import type { ArtifactStore } from '../storage/artifact-store.js';
import type { MetadataStore } from '../storage/metadata-store.js';

/** What activities may touch. Built by the worker process from real services; tests hand in the test stack's. */
export interface ActivityDeps {
  readonly artifacts: ArtifactStore;
  readonly metadata: MetadataStore;
  readonly logger: Logger;
}
