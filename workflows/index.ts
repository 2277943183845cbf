export { ingestArtifact, type IngestArtifactInput, type IngestArtifactResult } from './ingest-artifact.js';
export { trainingHostCheck, type TrainingHostCheckInput } from './training-host-check.js';
export {
  dataStages,
  currentStageQuery,
  type DataStagesInput,
  type DataStagesResult,
  type DataStageName,
} from './data-stages.js';
export { trainModel, type TrainModelWorkflowInput } from './train-model.js';
export {
  trainingPipeline,
  pipelineProgressQuery,
  approveUpdate,
  rejectUpdate,
  PIPELINE_STAGES,
  type TrainingPipelineInput,
  type TrainingPipelineResult,
  type PipelineProgress,
  type PipelineOutcome,
  type PipelineStage,
  type ApprovalRequest,
  type ApprovalDecision,
} from './training-pipeline.js';
export {
  deploymentRollout,
  rolloutStateQuery,
  type DeploymentRolloutInput,
  type DeploymentRolloutResult,
  type RolloutOutcome,
  type RolloutPhase,
  type RolloutState,
  type RolloutStep,
  type RolloutResume,
} from './deployment-rollout.js';
export { reconcileDeploymentRollouts, ROLLOUT_RECONCILER_SCHEDULE_ID } from './rollout-reconciler.js';
export {
  maintainPredictionLogs,
  PREDICTION_LOG_MAINTENANCE_SCHEDULE_ID,
  type PredictionLogMaintenanceInput,
  type PredictionLogMaintenanceResult,
} from './prediction-log-maintenance.js';
export {
  batchScore,
  batchScoreStateQuery,
  type BatchScoreInput,
  type BatchScoreResult,
  type BatchScoreStage,
  type BatchScoreState,
} from './batch-score.js';
export { triggerPipelineRun, type TriggerPipelineRunInput } from './trigger-run.js';
export {
  newDataTrigger,
  newDataSignal,
  newDataWorkflowId,
  pollScheduleId,
  pollWatchedPrefix,
  NEW_DATA_CYCLES_PER_RUN,
  type NewDataCycle,
  type NewDataNotice,
  type NewDataTriggerInput,
} from './new-data.js';
export { monitorDeployment, type MonitorDeploymentInput, type MonitorDeploymentResult } from './monitor-deployment.js';
