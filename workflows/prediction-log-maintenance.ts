import { proxyActivities } from '@temporalio/workflow';
import { addDays, dayOf } from '../core/days.js';
import type { EnsuredPartition, MainActivities, PartitionExport } from '../activities/index.js';

/** The schedule that runs {@link maintainPredictionLogs} daily, and the id prefix of its workflows. */
export const PREDICTION_LOG_MAINTENANCE_SCHEDULE_ID = 'prediction-log-maintenance';

export interface PredictionLogMaintenanceInput {
  /** Days after today whose partitions are created ahead. */
  readonly aheadDays: number;
  /** Days kept in Postgres; older day partitions are exported to the warehouse and dropped. */
  readonly retentionDays: number;
}

export interface PredictionLogMaintenanceResult {
  readonly today: string;
  readonly created: EnsuredPartition[];
  readonly exported: PartitionExport[];
}

/**
 * One pass of the prediction log's maintenance: partitions for today and `aheadDays` ahead (and for days with rows
 * in the DEFAULT partition), then each day past the retention exported to Parquet in S3 and dropped, oldest first.
 * Started daily (and once when the main worker starts) by a schedule; safe to run at any time, and again.
 */
export async function maintainPredictionLogs(
  input: PredictionLogMaintenanceInput,
): Promise<PredictionLogMaintenanceResult> {
  const { ensurePredictionLogPartitions, listExpiredPredictionLogPartitions } = proxyActivities<MainActivities>({
    startToCloseTimeout: '5 minutes',
    retry: { initialInterval: '5s', maximumInterval: '1 minute', maximumAttempts: 10 },
  });
  const { exportPredictionLogPartition } = proxyActivities<MainActivities>({
    startToCloseTimeout: '1 hour',
    // The export heartbeats every 10 s, during its long steps too. Should an attempt still be started beside a
    // running one, the export's lock on the day has it wait for that one.
    heartbeatTimeout: '2 minutes',
    retry: { initialInterval: '10s', maximumInterval: '5 minutes', maximumAttempts: 10 },
  });
  // The workflow's clock: a retried activity works on the same day.
  const today = dayOf(Date.now());
  const created = await ensurePredictionLogPartitions({ today, aheadDays: input.aheadDays });
  const expired = await listExpiredPredictionLogPartitions({ today, retentionDays: input.retentionDays });
  const exported: PartitionExport[] = [];
  for (const day of expired) {
    // Never the days still kept, whatever the listing said.
    if (day >= addDays(today, -input.retentionDays)) continue;
    exported.push(await exportPredictionLogPartition({ day }));
  }
  return { today, created, exported };
}
