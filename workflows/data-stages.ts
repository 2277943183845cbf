import {
  defineQuery,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  type ActivityOptions,
} from '@temporalio/workflow';
import type {
  ExtractDataInput,
  ExtractDataResult,
  MainActivities,
  PrepareDataInput,
  PrepareDataResult,
  StatisticsResult,
  ValidateDataResult,
} from '../activities/index.js';
import { SearchAttributeKeys } from '../core/constants.js';
import { FINAL_FAILURE_TYPES, type PipelineStage } from '../core/stages.js';

/** Data stages read and write large files: they heartbeat, and a lost worker is noticed within a minute. */
const dataStage: ActivityOptions = {
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '1 minute',
  retry: {
    initialInterval: '1s',
    backoffCoefficient: 2,
    maximumInterval: '1 minute',
    nonRetryableErrorTypes: [...FINAL_FAILURE_TYPES],
  },
};

const { extractData, computeStatistics, validateData, prepareData } = proxyActivities<MainActivities>(dataStage);

export interface DataStagesInput extends ExtractDataInput {
  /** Label, features and split; absent: stop after validation (a data check without training). */
  readonly prepare?: Omit<PrepareDataInput, 'dataset' | 'snapshot'>;
}

export interface DataStagesResult {
  readonly extract: ExtractDataResult;
  readonly statistics: StatisticsResult;
  readonly validation: ValidateDataResult;
  readonly prepared?: PrepareDataResult;
}

/** The pipeline stages this workflow runs, under their one name (core/stages.ts). */
export type DataStageName = Extract<PipelineStage, 'extract' | 'statistics' | 'validate_data' | 'prepare'> | 'done';

/** The stage a run is in now, for the API and the Temporal UI. */
export const currentStageQuery = defineQuery<DataStageName>('currentStage');

/**
 * The first half of a level-1 pipeline: extract a snapshot, compute its statistics, validate it against the
 * dataset's schema (and drift against the last accepted snapshot), then prepare train/eval splits and the fitted
 * transform. Bad data stops the run at the stage that found it, with a typed failure; no later stage runs.
 */
export async function dataStages(input: DataStagesInput): Promise<DataStagesResult> {
  let stage: DataStageName = 'extract';
  setHandler(currentStageQuery, () => stage);
  const enter = (next: DataStageName) => {
    stage = next;
    upsertSearchAttributes([{ key: SearchAttributeKeys.stage, value: next }]);
  };
  upsertSearchAttributes([{ key: SearchAttributeKeys.pipeline, value: input.dataset }]);

  enter('extract');
  const extract = await extractData({
    dataset: input.dataset,
    source: input.source,
    ...(input.format ? { format: input.format } : {}),
    ...(input.span ? { span: input.span } : {}),
  });
  enter('statistics');
  const statistics = await computeStatistics({ dataset: input.dataset, snapshot: extract.snapshot });
  enter('validate_data');
  const validation = await validateData({
    dataset: input.dataset,
    snapshot: extract.snapshot,
    statistics: statistics.statistics,
  });
  let prepared: PrepareDataResult | undefined;
  if (input.prepare) {
    enter('prepare');
    prepared = await prepareData({ dataset: input.dataset, snapshot: extract.snapshot, ...input.prepare });
  }
  enter('done');
  return { extract, statistics, validation, ...(prepared ? { prepared } : {}) };
}
