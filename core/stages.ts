import { FailureType } from './constants.js';

/**
 * The stages of a pipeline run, in order, under one name each: the API's stage rows, the progress query, the `Stage`
 * search attribute, the metadata store's executions (what a resume reuses) and the data-stages workflow all use it.
 * `approval` is entered only under the approval policy.
 */
export const PIPELINE_STAGES = [
  'extract',
  'statistics',
  'validate_data',
  'prepare',
  'train',
  'evaluate',
  'validate_model',
  'register',
  'approval',
  'deploy',
] as const;
export type PipelineStage = (typeof PIPELINE_STAGES)[number];

/** Which worker runs a stage: the main task queue, the training queue (GPU hosts poll it), or the workflow itself. */
export type StageQueue = 'main' | 'training' | 'workflow';

export interface StageSpec {
  /** The activity type; histories record it, so it never changes for a stage that exists. */
  readonly activity?: string;
  readonly queue: StageQueue;
  /** The activity records its result in the metadata store under the stage's name; a resume reuses it. */
  readonly resumable: boolean;
  /**
   * Names the stage's result was recorded under before it had one name. Runs recorded then still resume, and their
   * histories still replay (a reused stage schedules no activity; looking only for the new name would).
   */
  readonly formerNames?: readonly string[];
}

/** Every stage's activity, queue and whether a resume reuses it. */
export const STAGES: Readonly<Record<PipelineStage, StageSpec>> = {
  extract: { activity: 'extractData', queue: 'main', resumable: true },
  statistics: { activity: 'computeStatistics', queue: 'main', resumable: true },
  validate_data: { activity: 'validateData', queue: 'main', resumable: true, formerNames: ['validate'] },
  prepare: { activity: 'prepareData', queue: 'main', resumable: true },
  train: { activity: 'trainModel', queue: 'training', resumable: true },
  evaluate: { activity: 'evaluateModel', queue: 'main', resumable: true },
  validate_model: { activity: 'validateModel', queue: 'main', resumable: true },
  register: { activity: 'registerModel', queue: 'main', resumable: true },
  // A decision is a person's: a resumed run asks again.
  approval: { queue: 'workflow', resumable: false },
  // Deploying is idempotent on the registry; a resume deploys (or finds the deployment) again.
  deploy: { activity: 'deployModel', queue: 'main', resumable: false },
};

/** The stages a resume reuses. */
export const RESUMABLE_STAGES: readonly PipelineStage[] = PIPELINE_STAGES.filter((s) => STAGES[s].resumable);

/** Every name a resumable stage's result may be recorded under in the metadata store, former names included. */
export const RESUMABLE_RECORDS: readonly string[] = RESUMABLE_STAGES.flatMap((s) => [
  s,
  ...(STAGES[s].formerNames ?? []),
]);

/** The result recorded for `stage` among `recorded` (by record name), under its name or a former one. */
export function recordedResult(recorded: Readonly<Record<string, unknown>>, stage: PipelineStage): unknown {
  for (const name of [stage, ...(STAGES[stage].formerNames ?? [])]) {
    if (recorded[name] !== undefined) return recorded[name];
  }
  return undefined;
}

/** The pipeline stage an activity type is, for the run's stage rows. */
export const STAGE_OF_ACTIVITY: Readonly<Record<string, PipelineStage>> = Object.fromEntries(
  PIPELINE_STAGES.flatMap((stage) => {
    const activity = STAGES[stage].activity;
    return activity ? [[activity, stage]] : [];
  }),
);

/**
 * Failure types no retry can fix, for every workflow's retry policy. Activities already end these with
 * non-retryable failures (core/application-failure.ts); the policy says so too, so a failure of one of these types
 * raised any other way is not retried either.
 */
export const FINAL_FAILURE_TYPES: readonly string[] = [
  FailureType.InvalidInput,
  FailureType.DataValidation,
  FailureType.NotFound,
  FailureType.ArtifactIntegrity,
  FailureType.ModelBelowThreshold,
];
