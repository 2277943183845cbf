/**
 * The rows of a monitoring window that Postgres no longer holds: days whose prediction-log partitions were exported
 * to the serving-log warehouse (Parquet in S3) and dropped. window-scan.ts finds those exports in the transaction
 * that streams the live rows; this reads them, joins their feedback by request id and counts them exactly as the
 * streamed rows are counted, so a window reads the same whether its days are in Postgres or in the warehouse.
 */
import type pg from 'pg';
import { readExportedParts, type PredictionLogWindowDeps } from '../storage/prediction-log-window.js';
import { accumulateInstance, type ScanPlan, type WindowQuery, type WindowScan } from './window-scan.js';

/** Request ids per feedback query (one round trip each). */
const FEEDBACK_BATCH = 10_000;

/** What `->>` gives for a JSON value: NULL for null or absent, a string as it is, anything else as its JSON text. */
function jsonText(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** The feedback labels' text (`label #>> '{}'`, as the window's COPY joins it) of the given requests. */
async function feedbackLabels(pool: pg.Pool, requestIds: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (let i = 0; i < requestIds.length; i += FEEDBACK_BATCH) {
    const { rows } = await pool.query<{ request_id: string; label: string | null }>(
      `select request_id, label #>> '{}' as label from prediction_feedback where request_id = any($1::text[])`,
      [requestIds.slice(i, i + FEEDBACK_BATCH)],
    );
    for (const row of rows) if (row.label !== null) out.set(row.request_id, row.label);
  }
  return out;
}

/**
 * Counts into `scan` the window's champion rows held by `scan.exportedParts` (rows with an error skipped, as the
 * live side skips them), each with its feedback label when one was sent. Adds them to `scan.rows` and
 * `scan.exportedRows`. Reads nothing when there are no such parts. Not idempotent: call it once per scan.
 *
 * @throws Error when the scan has exported parts and `deps.warehouse` is absent (their rows cannot be read).
 */
export async function countExportedRows(
  deps: {
    readonly pool: pg.Pool;
    readonly scratchDir: string;
    readonly warehouse?: PredictionLogWindowDeps['warehouse'];
  },
  scan: WindowScan,
  plan: ScanPlan,
  query: WindowQuery,
): Promise<void> {
  if (scan.exportedParts.length === 0) return;
  const { warehouse } = deps;
  if (!warehouse) {
    const days = scan.exportedParts.map((p) => p.day).join(', ');
    throw new Error(`the window reaches exported days (${days}) but this worker has no prediction log warehouse`);
  }
  const rows = await readExportedParts(
    { pool: deps.pool, warehouse, scratchDir: deps.scratchDir },
    scan.exportedParts,
    {
      deployment: query.deployment,
      start: query.start,
      end: query.end,
      versionId: query.versionId,
      role: 'champion',
    },
  );
  const served = rows.filter((r) => r.error === null);
  const labels = await feedbackLabels(
    deps.pool,
    served.map((r) => r.requestId),
  );
  for (const row of served) {
    const outputs = row.outputs;
    accumulateInstance(scan, plan, row.features, {
      label: jsonText(outputs?.label),
      probabilities: outputs && 'probabilities' in outputs ? JSON.stringify(outputs.probabilities) : null,
      prediction: jsonText(outputs?.prediction),
      feedback: labels.get(row.requestId) ?? null,
    });
  }
  scan.exportedRows += served.length;
}
