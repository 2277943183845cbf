/**
 * The prediction log's daily maintenance as activities (workflows/prediction-log-maintenance.ts runs them): day
 * partitions created ahead, expired ones exported to the serving-log warehouse and dropped. Each is idempotent.
 */
import { Context } from '@temporalio/activity';
import type { Day } from '../core/days.js';
import { exportPredictionLogPartition, type PartitionExport } from '../storage/prediction-log-export.js';
import {
  ensurePredictionLogPartitions,
  expiredPartitionDays,
  type EnsuredPartition,
} from '../storage/prediction-log-partitions.js';
import type { PredictionLogWarehouse } from '../storage/prediction-log-warehouse.js';
import type { ActivityDeps } from './deps.js';

export type { PartitionExport } from '../storage/prediction-log-export.js';
export type { EnsuredPartition } from '../storage/prediction-log-partitions.js';

export interface EnsurePartitionsInput {
  /** The UTC day the workflow runs on (its clock, so a retried activity creates the same partitions). */
  readonly today: Day;
  readonly aheadDays: number;
}

export interface ExpiredPartitionsInput {
  readonly today: Day;
  readonly retentionDays: number;
}

function warehouseOf(deps: PredictionLogMaintenanceDeps): PredictionLogWarehouse {
  if (!deps.predictionLogWarehouse) {
    throw new Error('this worker was built without a prediction log warehouse (ActivityDeps.predictionLogWarehouse)');
  }
  return deps.predictionLogWarehouse;
}

/** What the maintenance needs of the worker's dependencies. */
export type PredictionLogMaintenanceDeps = Pick<
  ActivityDeps,
  'pgPool' | 'predictionLogWarehouse' | 'scratchDir' | 'logger'
>;

export function createPredictionLogMaintenanceActivities(deps: PredictionLogMaintenanceDeps) {
  return {
    /**
     * Creates the partitions of today and the `aheadDays` days after it, and of any day with rows in the DEFAULT
     * partition (moving them into it). Returns only the partitions created now.
     */
    async ensurePredictionLogPartitions(input: EnsurePartitionsInput): Promise<EnsuredPartition[]> {
      const ensured = await ensurePredictionLogPartitions(deps.pgPool, {
        from: input.today,
        aheadDays: input.aheadDays,
      });
      const created = ensured.filter((p) => p.created);
      if (created.length > 0) deps.logger.info({ created }, `prediction logs: ${created.length} partitions created`);
      return created;
    },

    /** The days whose partitions are past the retention, oldest first. */
    async listExpiredPredictionLogPartitions(input: ExpiredPartitionsInput): Promise<Day[]> {
      return expiredPartitionDays(deps.pgPool, input);
    },

    /**
     * Exports one expired day to Parquet in S3 and drops its partition. Heartbeats at every step and every 10 s
     * during one (a long copy or conversion included), and stops when the attempt is cancelled or timed out; an
     * attempt started while an earlier one still runs waits for it (the export's lock on the day).
     */
    async exportPredictionLogPartition(input: { readonly day: Day }): Promise<PartitionExport> {
      const context = Context.current();
      const heartbeat = (step: string) => context.heartbeat({ day: input.day, step });
      const result = await exportPredictionLogPartition(
        {
          pool: deps.pgPool,
          warehouse: warehouseOf(deps),
          scratchDir: deps.scratchDir,
          onProgress: heartbeat,
          progressIntervalMs: 10_000,
          signal: context.cancellationSignal,
          onWarning: (message, error) => deps.logger.warn({ err: error, day: input.day }, message),
        },
        input.day,
      );
      deps.logger.info({ ...result }, `prediction logs: ${input.day} ${result.status}`);
      return result;
    },
  };
}
