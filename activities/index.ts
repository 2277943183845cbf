import type { ActivityDeps } from './deps.js';
import { createDataActivities } from './data-stages.js';
import { createIngestActivities } from './ingest.js';
import type { createTrainingActivities } from './training-host.js';

export type { ActivityDeps } from './deps.js';
export type { RecordedLineage, RecordLineageInput, StoreArtifactInput } from './ingest.js';
export type { GpuInfo, TrainingHostInfo } from './training-host.js';
export type {
  ExtractDataInput,
  ExtractDataResult,
  PrepareDataInput,
  PrepareDataResult,
  StatisticsResult,
  ValidateDataInput,
  ValidateDataResult,
} from './data-stages.js';
export { createTrainingActivities } from './training-host.js';

/** Activities served by the main task queue. Workflows see their types only. */
export function createActivities(deps: ActivityDeps) {
  return { ...createIngestActivities(deps), ...createDataActivities(deps) };
}

export type MainActivities = ReturnType<typeof createActivities>;
export type TrainingActivities = ReturnType<typeof createTrainingActivities>;
