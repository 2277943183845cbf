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
  batchScore,
  batchScoreStateQuery,
  type BatchScoreInput,
  type BatchScoreResult,
  type BatchScoreStage,
  type BatchScoreState,
} from './batch-score.js';
