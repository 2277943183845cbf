import type { ActivityDeps } from './deps.js';
import { computeMonitoringWindow } from '../monitoring/window.js';
import type { MonitorWindowInput, WindowSummary } from '../monitoring/types.js';

/** The monitor's computation: one window of a deployment (see monitoring/window.ts). */
export function createMonitoringWindowActivities(deps: ActivityDeps) {
  return {
    /**
     * Computes and stores one monitoring window; idempotent (same deployment and span: same row, same id), so
     * Temporal may retry it freely. A missing deployment or champion fails with the non-retryable NotFound type.
     */
    async computeMonitoringWindow(input: MonitorWindowInput): Promise<WindowSummary> {
      return computeMonitoringWindow(deps, input);
    },
  };
}
