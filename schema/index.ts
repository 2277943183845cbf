/**
 * The database schema, one module per aggregate. `storage/database.ts` passes this module to Drizzle, and
 * drizzle-kit generates `schema/migrations/` from it (`npm run db:generate`).
 */
export type { JsonProperties } from './columns.js';
export {
  PIPELINE_RUN_STATUSES,
  PIPELINE_STAGE_STATUSES,
  pipelines,
  pipelineVersions,
  pipelineRuns,
  pipelineRunStages,
  pipelinesRelations,
  pipelineVersionsRelations,
  pipelineRunsRelations,
  pipelineRunStagesRelations,
} from './pipelines.js';
export type {
  PipelineRunStatus,
  PipelineStageStatus,
  RunFailure,
  ResolvedSpans,
  Pipeline,
  NewPipeline,
  PipelineVersion,
  NewPipelineVersion,
  PipelineRun,
  NewPipelineRun,
  PipelineRunStage,
  NewPipelineRunStage,
} from './pipelines.js';
export {
  ArtifactType,
  ARTIFACT_STATES,
  EXECUTION_STATES,
  EVENT_TYPES,
  CONTEXT_TYPES,
  artifacts,
  executions,
  events,
  contexts,
  attributions,
  associations,
  artifactsRelations,
  executionsRelations,
  eventsRelations,
  contextsRelations,
  attributionsRelations,
  associationsRelations,
} from './metadata.js';
export type {
  ArtifactState,
  ExecutionState,
  EventType,
  ContextType,
  Artifact,
  NewArtifact,
  Execution,
  NewExecution,
  MetadataEvent,
  NewMetadataEvent,
  MetadataContext,
  NewMetadataContext,
  Attribution,
  Association,
} from './metadata.js';
export {
  MODEL_VERSION_STATUSES,
  registeredModels,
  modelVersions,
  modelAliases,
  modelAliasChanges,
  modelVersionTransitions,
  registeredModelsRelations,
  modelVersionsRelations,
  modelAliasesRelations,
  modelVersionTransitionsRelations,
} from './registry.js';
export type {
  ModelVersionStatus,
  SignatureField,
  ModelSignature,
  ModelBlessing,
  RegisteredModel,
  NewRegisteredModel,
  ModelVersion,
  NewModelVersion,
  ModelAlias,
  NewModelAlias,
  ModelAliasChange,
  NewModelAliasChange,
  ModelVersionTransition,
  NewModelVersionTransition,
} from './registry.js';
export {
  DEPLOYMENT_STRATEGIES,
  DEPLOYMENT_ROLES,
  deployments,
  deploymentRevisions,
  deploymentsRelations,
  deploymentRevisionsRelations,
} from './deployments.js';
export type {
  DeploymentStrategy,
  DeploymentRole,
  DeploymentConfig,
  Deployment,
  NewDeployment,
  DeploymentRevision,
  NewDeploymentRevision,
} from './deployments.js';
export {
  SCHEMA_CHANGE_KINDS,
  datasets,
  datasetSchemaVersions,
  datasetsRelations,
  datasetSchemaVersionsRelations,
} from './datasets.js';
export type {
  SchemaChangeKind,
  Dataset,
  NewDataset,
  DatasetSchemaVersion,
  NewDatasetSchemaVersion,
} from './datasets.js';
export { predictionLogs, predictionLogExports } from './predictions.js';
export type { PredictionLog, NewPredictionLog, PredictionLogExport, NewPredictionLogExport } from './predictions.js';
export { API_SCOPES, CONNECTION_KINDS, SECRET_SOURCES, apiKeys, connections } from './access.js';
export type { ApiScope, ConnectionKind, SecretSource, ApiKey, NewApiKey, Connection, NewConnection } from './access.js';
export {
  TRIGGER_KINDS,
  TRIGGER_STATUSES,
  MONITORING_ACTION_KINDS,
  pipelineTriggers,
  watchedObjects,
  predictionFeedback,
  monitoringWindows,
  monitoringActions,
  alertDeliveries,
} from './monitoring.js';
export type {
  TriggerKind,
  TriggerStatus,
  MonitoringActionKind,
  PipelineTrigger,
  WatchedObject,
  PredictionFeedback,
  MonitoringWindow,
  MonitoringAction,
  AlertDelivery,
} from './monitoring.js';
