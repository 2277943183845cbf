import { DefaultLogger, Runtime, type LogLevel, type TelemetryOptions } from '@temporalio/worker';
import type { Logger } from '../core/logger.js';

let installed = false;

/**
 * SDK warnings that describe what the platform does on purpose: the training queue's worker runs activities only.
 * Logged at debug, so a terminal does not show them as problems.
 */
const EXPECTED_WARNINGS = new Set(['No workflows registered, not polling for workflow tasks']);

const levels: Record<string, LogLevel> = {
  trace: 'TRACE',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARN',
  error: 'ERROR',
  fatal: 'ERROR',
  silent: 'ERROR',
};

export interface TemporalRuntimeOptions {
  /**
   * `host:port` where the SDK serves its worker and connection metrics (task slots, poll and schedule-to-start
   * latencies, sticky cache, gRPC requests; all named `temporal_*`) in the Prometheus format under `/metrics`.
   * Undefined: no exporter (tests, which must not bind a fixed port).
   */
  readonly metricsBindAddress?: string | undefined;
}

/** The SDK's Prometheus exporter: durations in seconds and counters ending in `_total`, as Prometheus names them. */
export function prometheusTelemetry(bindAddress: string): TelemetryOptions {
  return {
    metrics: {
      prometheus: { bindAddress, countersTotalSuffix: true, unitSuffix: true, useSecondsForDurations: true },
    },
  };
}

/**
 * Routes the Temporal SDK's own logs (worker lifecycle, workflow and activity loggers) into our pino logger, so a
 * process writes one structured stream, and serves the SDK's metrics when `metricsBindAddress` is given. The runtime
 * is process-wide and can be installed once; later calls no-op. An exporter that cannot bind its address (another
 * worker on the host holds the port) is logged and left out: the worker runs without it rather than not at all.
 */
export function installTemporalRuntime(logger: Logger, level: string, options: TemporalRuntimeOptions = {}): void {
  if (installed) return;
  installed = true;
  const sdkLogger = createSdkLogger(logger, level);
  const { metricsBindAddress } = options;
  if (metricsBindAddress !== undefined) {
    try {
      Runtime.install({ logger: sdkLogger, telemetryOptions: prometheusTelemetry(metricsBindAddress) });
      logger.info({ metricsAddress: metricsBindAddress }, 'Temporal SDK metrics served for Prometheus');
      return;
    } catch (error) {
      logger.warn(
        { err: error, metricsAddress: metricsBindAddress },
        'could not serve the Temporal SDK metrics (set WORKER_METRICS_PORT to a free port, or 0): running without',
      );
    }
  }
  Runtime.install({ logger: sdkLogger });
}

function createSdkLogger(logger: Logger, level: string): DefaultLogger {
  return new DefaultLogger(levels[level] ?? 'INFO', (entry) => {
    const { meta, message } = entry;
    // pino serializes errors only under `err`; the SDK puts them under `error`.
    const { error, ...rest } = (meta ?? {}) as Record<string, unknown>;
    const line = { ...rest, ...(error !== undefined ? { err: error } : {}), sdk: true };
    const level = entry.level === 'WARN' && EXPECTED_WARNINGS.has(message) ? 'DEBUG' : entry.level;
    switch (level) {
      case 'TRACE':
        logger.trace(line, message);
        break;
      case 'DEBUG':
        logger.debug(line, message);
        break;
      case 'INFO':
        logger.info(line, message);
        break;
      case 'WARN':
        logger.warn(line, message);
        break;
      case 'ERROR':
        logger.error(line, message);
        break;
    }
  });
}
