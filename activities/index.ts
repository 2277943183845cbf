import type { ActivityDeps } from './deps.js';
import { createDataActivities } from './data-stages.js';
import { createIngestActivities } from './ingest.js';
import { createTrainingHostActivities } from './training-host.js';
import { createTrainingActivities as createTrainerActivities } from './training.js';

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
export type { TrainModelInput, TrainModelResult, TrainingHeartbeat } from './training.js';

/** Activities served by the main task queue. Workflows see their types only. */
export function createActivities(deps: ActivityDeps) {
  return { ...createIngestActivities(deps), ...createDataActivities(deps) };
}

/** Activities served by the training task queue (the one GPU hosts poll). */
export function createTrainingActivities(deps: ActivityDeps) {
  return { ...createTrainingHostActivities(), ...createTrainerActivities(deps) };
}

export type MainActivities = ReturnType<typeof createActivities>;
export type TrainingActivities = ReturnType<typeof createTrainingActivities>;
