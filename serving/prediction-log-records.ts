/**
 * What the prediction log holds: a request as the predict route (or a shadow) hands it over, and the rows of
 * `prediction_logs` it becomes, one per instance.
 * Pure: no queue, no connection (the writer is prediction-log.ts, the Postgres sink prediction-log-postgres.ts).
 */
import type { DeploymentRole } from '../schema/deployments.js';
import type { ShadowResult } from './shadow-scorer.js';

/** One answered request, as the predict route hands it over: one row per instance. */
export interface PredictionLogRecord {
  readonly requestId: string;
  /** When the prediction was made, in ms since the epoch (`Date.now()`). */
  readonly loggedAt: number;
  /** The deployment addressed; null when a model (or one of its versions) was addressed directly. */
  readonly deployment: string | null;
  readonly model: { readonly name: string; readonly version: number; readonly versionId: string };
  readonly role: DeploymentRole;
  /** The instances as received: each one becomes a row's `features` (serialised when the request is queued). */
  readonly instances: readonly object[];
  /** Each instance's output as JSON text, in the same order (null or absent for an instance the model failed on). */
  readonly outputs?: readonly (string | null)[] | undefined;
  /** Time from the request's arrival to its response, in ms (shared by the request's rows). */
  readonly latencyMs: number;
  /** Set when the model failed on these instances. */
  readonly error?: string | undefined;
}

/** One row of `prediction_logs`, as the sink receives it (the id is the table's). */
export interface PredictionLogRow {
  readonly requestId: string;
  /** ms since the epoch. */
  readonly loggedAt: number;
  readonly deployment: string | null;
  readonly model: string;
  readonly versionId: string;
  readonly version: number;
  readonly role: DeploymentRole;
  /** The instance as JSON text. */
  readonly features: string;
  /** The output as JSON text. */
  readonly outputs: string | null;
  readonly latencyMs: number;
  readonly error: string | null;
}

/** A shadow's answer to a copy of a request, as a log record (role `shadow`; its own latency). */
export function shadowLogRecord(result: ShadowResult): PredictionLogRecord {
  return {
    requestId: result.requestId,
    loggedAt: result.startedAt.getTime(),
    deployment: result.deployment,
    model: result.model,
    role: 'shadow',
    instances: result.instances,
    outputs: result.predictions?.map((prediction) => JSON.stringify(prediction)),
    latencyMs: result.latencyMs,
    error: result.error,
  };
}

/** A request's rows, with each instance serialised. */
export function rowsOf(record: PredictionLogRecord): PredictionLogRow[] {
  const { instances, model, outputs } = record;
  const rows = new Array<PredictionLogRow>(instances.length);
  for (let i = 0; i < instances.length; i++) {
    rows[i] = {
      requestId: record.requestId,
      loggedAt: record.loggedAt,
      deployment: record.deployment,
      model: model.name,
      versionId: model.versionId,
      version: model.version,
      role: record.role,
      features: JSON.stringify(instances[i]),
      outputs: outputs?.[i] ?? null,
      latencyMs: record.latencyMs,
      error: record.error ?? null,
    };
  }
  return rows;
}
