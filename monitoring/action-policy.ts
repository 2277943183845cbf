/**
 * When a monitoring window acts, as pure functions over its summary and the definition's `monitoring` section: the
 * monitor workflow decides with them, and the action activities check again with the same ones. Types only from the
 * definition, so workflow code may import this file.
 */
import type { PipelineDefinition } from '../pipelines/definition.js';
import type { WindowSummary } from './types.js';

/** The definition's `monitoring` section, defaults filled in. */
export type MonitoringPolicy = NonNullable<PipelineDefinition['monitoring']>;
export type RollbackPolicy = NonNullable<MonitoringPolicy['rollback']>;

/** Default of `monitoring.everySeconds` (hourly), for a deployment whose definition has no monitoring section. */
export const DEFAULT_MONITORING_INTERVAL_SECONDS = 3600;

/** The span one window covers: asked for, else the definition's `windowSeconds`, else its interval. */
export function windowSecondsOf(policy: MonitoringPolicy | undefined, asked?: number): number {
  return asked ?? policy?.windowSeconds ?? policy?.everySeconds ?? DEFAULT_MONITORING_INTERVAL_SECONDS;
}

/** The start of every rollback revision's reason: how a later window recognises a rollback that already happened. */
export function rollbackReasonPrefix(windowId: string): string {
  return `rollback: monitoring window ${windowId}`;
}

/** Whether a revision's reason says a monitoring window rolled back to it. */
export function isMonitoringRollback(reason: string): boolean {
  return reason.startsWith('rollback: monitoring window ');
}

/**
 * Why the window's live metric calls for a rollback (`auc 0.61 < 0.7 on 480 labelled rows`), or undefined: the
 * metric was measured on at least `minLabelledRows` labelled rows and is below `min` or above `max`.
 */
export function rollbackCause(summary: WindowSummary, rollback: RollbackPolicy | undefined): string | undefined {
  if (!rollback || summary.labelledRows < rollback.minLabelledRows) return undefined;
  const value = summary.live?.[rollback.metric];
  if (value === undefined || !Number.isFinite(value)) return undefined;
  const on = `on ${summary.labelledRows} labelled rows`;
  if (rollback.min !== undefined && value < rollback.min)
    return `${rollback.metric} ${round(value)} < ${rollback.min} ${on}`;
  if (rollback.max !== undefined && value > rollback.max)
    return `${rollback.metric} ${round(value)} > ${rollback.max} ${on}`;
  return undefined;
}

/**
 * Whether a window acts at all: it breached a threshold or a rollback floor, with at least `minRows` predictions.
 * A window below `minRows` is reported and raises nothing.
 */
export function windowActs(summary: WindowSummary, policy: MonitoringPolicy | undefined): boolean {
  if (!policy || summary.belowMinRows) return false;
  return summary.breached || rollbackCause(summary, policy.rollback) !== undefined;
}

/** What a window's breaches were, in one line (`skew of x 0.31 > 0.1; drift of kind 0.42 > 0.1`). */
export function describeBreaches(summary: WindowSummary): string {
  const parts = summary.breaches.map((b) =>
    b.kind === 'performance'
      ? `${b.subject} ${round(b.value)} (limit ${b.threshold})`
      : `${b.kind} of ${b.subject} ${round(b.value)} > ${b.threshold}`,
  );
  return parts.length > 0 ? parts.join('; ') : 'no threshold breached';
}

function round(value: number): number {
  return Math.round(value * 10_000) / 10_000;
}
