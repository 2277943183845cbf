/** What every scenario of the serving benchmark runs against, set up once before the first round. */
import type { ModelVersion } from '../../schema/registry.js';
import type { PlatformStorage } from '../../storage/open-storage.js';
import type { ServingOptions } from './options.js';
import type { ServerName } from './scenarios.js';
import type { Server } from './server-process.js';

export interface ServingContext {
  readonly options: ServingOptions;
  /** The servers the chosen scenarios need, started and answering. */
  readonly servers: ReadonlyMap<ServerName, Server>;
  /** The deployment (and model) names of the two models. */
  readonly names: { readonly lr: string; readonly gbt: string };
  /** Request bodies: distinct single-instance ones, and batches of `options.batchSize` instances. */
  readonly singleBodies: readonly string[];
  readonly batchBodies: readonly string[];
  /** The deployment store the hot swap deploys through. */
  readonly deployments: PlatformStorage['deployments'];
  /** The trees' two versions: the two sides of the hot swap. */
  readonly gbtVersions: readonly [ModelVersion, ModelVersion];
}
