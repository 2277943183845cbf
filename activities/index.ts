import type { ActivityDeps } from './deps.js';
import { createBatchScoringActivities } from './batch-scoring.js';
import { createDataActivities } from './data-stages.js';
import { createDeploymentActivities } from './deployment.js';
import { createEvaluateActivities } from './evaluate.js';
import { withFailureContract } from './failure-contract.js';
import { createIngestActivities } from './ingest.js';
import { createModelValidationActivities } from './model-validation.js';
import { createRegisterDeployActivities } from './register-deploy.js';
import { createRunBookkeepingActivities } from './run-bookkeeping.js';
import { createRunWindowActivities } from './run-window.js';
import { trackRunStages } from './run-stages.js';
import { createTrainingHostActivities } from './training-host.js';
import { createTrainingActivities as createTrainerActivities } from './training.js';
import { createTriggerActivities } from './triggers.js';
import { createMonitoringActionActivities } from './monitoring-actions.js';
import { createMonitoringWindowActivities } from './monitoring-window.js';
import { createNewDataActivities } from './new-data.js';
import { createPredictionLogMaintenanceActivities } from './prediction-log-maintenance.js';

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
export type { BeginPipelineRunResult } from './run-bookkeeping.js';
export type { ResolveRunWindowInput } from './run-window.js';
export type { MonitoringActionOutcome, MonitoringPolicyResult } from './monitoring-actions.js';
export type { ClaimNewObjectsResult, PollNewObjectsResult } from './new-data.js';
export type { ChampionEvaluation, EvaluateModelResult } from './evaluate.js';
export type { ValidateModelResult } from './model-validation.js';
export type { DeployModelResult, RegisterModelResult } from './register-deploy.js';
export type {
  CanaryCheck,
  CanaryComparison,
  CanaryThresholds,
  CompareCanaryInput,
  EndCanaryInput,
  ReconciledRollout,
  ReconcileOptions,
  StartCanaryActivityInput,
  StartCanaryResult,
  TrafficState,
} from './deployment.js';
export type { ScoreDatasetInput, ScoreDatasetResult, ScoreProgress, ScoredModel } from './batch-scoring.js';
export type {
  EnsuredPartition,
  EnsurePartitionsInput,
  ExpiredPartitionsInput,
  PartitionExport,
} from './prediction-log-maintenance.js';
export { STAGE_OF_ACTIVITY } from './run-stages.js';
/** Record types the pipeline workflow returns (workflow code may import types from activities only). */
export type { ModelBlessing, RunFailure } from '../schema/index.js';

/** Activities served by the main task queue. Workflows see their types only. */
export function createActivities(deps: ActivityDeps) {
  return trackRunStages(
    withFailureContract({
      ...createIngestActivities(deps),
      ...createDataActivities(deps),
      ...createRunBookkeepingActivities(deps),
      ...createRunWindowActivities(deps),
      ...createEvaluateActivities(deps),
      ...createModelValidationActivities(deps),
      ...createRegisterDeployActivities(deps),
      ...createDeploymentActivities(deps),
      ...createBatchScoringActivities(deps),
      ...createTriggerActivities(deps),
      ...createMonitoringActionActivities(deps),
      ...createMonitoringWindowActivities(deps),
      ...createNewDataActivities(deps),
      ...createPredictionLogMaintenanceActivities(deps),
    }),
    deps.pipelines,
    deps.logger,
  );
}

/** Activities served by the training task queue (the one GPU hosts poll). */
export function createTrainingActivities(deps: ActivityDeps) {
  return trackRunStages(
    withFailureContract({ ...createTrainingHostActivities(), ...createTrainerActivities(deps) }),
    deps.pipelines,
    deps.logger,
  );
}

export type MainActivities = ReturnType<typeof createActivities>;
export type TrainingActivities = ReturnType<typeof createTrainingActivities>;
