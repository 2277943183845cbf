import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
/**
 * Names shared by workflows, workers, the API and the stack manager. Task queues, search attributes and failure
 * types are referenced from here only, never as repeated literals. This module is deterministic: workflow code
 * may import it.
 */

/** Default task queue names; the deployed values come from configuration (TEMPORAL_TASK_QUEUE, ...). */
export const DEFAULT_MAIN_TASK_QUEUE = 'mlops-main';
export const DEFAULT_TRAINING_TASK_QUEUE = 'mlops-training';

/** Custom search attributes the platform registers with the Temporal server, with their indexed types. */
export const SearchAttribute = {
  Pipeline: 'pipeline',
  Model: 'model',
  Trigger: 'trigger',
  Stage: 'stage',
  Status: 'pipelineStatus',
} as const;
export type SearchAttributeName = (typeof SearchAttribute)[keyof typeof SearchAttribute];

export const SEARCH_ATTRIBUTE_TYPES: Record<SearchAttributeName, 'Keyword' | 'Text' | 'Int' | 'Datetime'> = {
  [SearchAttribute.Pipeline]: 'Keyword',
  [SearchAttribute.Model]: 'Keyword',
  [SearchAttribute.Trigger]: 'Keyword',
  [SearchAttribute.Stage]: 'Keyword',
  [SearchAttribute.Status]: 'Keyword',
};

/** Stable `type` strings of non-retryable application failures; users and the API match on them. */
export const FailureType = {
  DataValidation: 'DataValidation',
  InvalidInput: 'InvalidInput',
  ArtifactIntegrity: 'ArtifactIntegrity',
  ModelBelowThreshold: 'ModelBelowThreshold',
  NotFound: 'NotFound',
} as const;
export type FailureTypeName = (typeof FailureType)[keyof typeof FailureType];

/** Typed keys of the search attributes, for workflows and clients. */
export const SearchAttributeKeys = {
  pipeline: defineSearchAttributeKey(SearchAttribute.Pipeline, SearchAttributeType.KEYWORD),
  model: defineSearchAttributeKey(SearchAttribute.Model, SearchAttributeType.KEYWORD),
  trigger: defineSearchAttributeKey(SearchAttribute.Trigger, SearchAttributeType.KEYWORD),
  stage: defineSearchAttributeKey(SearchAttribute.Stage, SearchAttributeType.KEYWORD),
  status: defineSearchAttributeKey(SearchAttribute.Status, SearchAttributeType.KEYWORD),
} as const;

/**
 * Temporal's own search attribute on a workflow a schedule started: the time the action was scheduled for (not when
 * it ran), so a late or retried action still covers the span it was meant for.
 */
export const TEMPORAL_SCHEDULED_START_TIME = defineSearchAttributeKey(
  'TemporalScheduledStartTime',
  SearchAttributeType.DATETIME,
);
