/**
 * The latest monitoring window of each deployment as Prometheus gauges on `/metrics`, so Prometheus and Grafana
 * users can alert on distances and live metrics themselves. Read from monitoring_windows when scraped: one query per
 * scrape at most (the families share it), none within `cacheMs` of the previous one, never two at a time, and a
 * scrape waits at most `readTimeoutMs` for it: a slow or absent Postgres answers the last windows read (none before
 * the first read), so serving's metrics on the same page are still answered.
 */
import { sql } from 'drizzle-orm';
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from '../core/logger.js';
import type { JsonProperties } from '../schema/columns.js';
import type { Database } from '../storage/database.js';
import type { WindowSummary } from './types.js';

/** The newest window of one deployment, as the gauges read it. */
export interface LatestWindow {
  readonly deployment: string;
  readonly windowEnd: Date;
  readonly summary: Partial<WindowSummary>;
}

/** The newest window of every deployment (one query). */
export async function latestMonitoringWindows(db: Database): Promise<LatestWindow[]> {
  const result = await db.execute<{ deployment: string; window_end: string | Date; summary: JsonProperties }>(sql`
    select distinct on (deployment) deployment, window_end, summary
    from monitoring_windows
    order by deployment, window_end desc, window_start desc`);
  return result.rows.map((r) => ({
    deployment: r.deployment,
    windowEnd: new Date(r.window_end),
    summary: r.summary as unknown as Partial<WindowSummary>,
  }));
}

export interface MonitoringGaugeOptions {
  readonly read: () => Promise<readonly LatestWindow[]>;
  /** How long one read answers scrapes. Default 5000 ms. */
  readonly cacheMs?: number;
  /** Longest a scrape waits for a read before answering with the last windows read. Default 2000 ms. */
  readonly readTimeoutMs?: number;
  readonly logger?: Logger;
}

/** Registers the monitoring gauge families on `registry` (the API's `/metrics` registry). */
export function registerMonitoringGauges(registry: Registry, options: MonitoringGaugeOptions): void {
  const cacheMs = options.cacheMs ?? 5000;
  const readTimeoutMs = options.readTimeoutMs ?? 2000;
  let snapshot: readonly LatestWindow[] = [];
  let fetchedAt = Number.NEGATIVE_INFINITY;
  let reading: Promise<void> | undefined;
  let failing = false;
  // One read at a time: a scrape during a slow read waits on it (at most readTimeoutMs) rather than start another.
  const read = (): Promise<void> =>
    (reading ??= options
      .read()
      .then(
        (windows) => {
          snapshot = windows;
          failing = false;
        },
        (error: unknown) => {
          // Once per outage, not once per scrape; the last windows read stay served.
          if (!failing)
            options.logger?.warn({ err: error }, 'could not read the latest monitoring windows for /metrics');
          failing = true;
        },
      )
      .finally(() => {
        // A failed read waits out the cache period too, so a down database is not asked again on every scrape.
        fetchedAt = performance.now();
        reading = undefined;
      }));
  let waiting: Promise<void> | undefined;
  const wait = async (): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, readTimeoutMs);
      timer.unref();
    });
    try {
      await Promise.race([read(), late]);
    } finally {
      clearTimeout(timer);
    }
  };
  const latest = async (): Promise<readonly LatestWindow[]> => {
    if (performance.now() - fetchedAt <= cacheMs) return snapshot;
    // The families of one scrape share one wait.
    waiting ??= wait().finally(() => (waiting = undefined));
    await waiting;
    return snapshot;
  };

  new Gauge({
    name: 'mlops_monitoring_feature_distance',
    help:
      'Distance of a feature (or `prediction`) in the latest monitoring window: kind skew (vs the training data) or ' +
      'drift (vs the previous window); Jensen-Shannon (numeric) or L-infinity (categorical), in [0, 1].',
    labelNames: ['deployment', 'feature', 'kind', 'method'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const w of await latest()) {
        const features = [...(w.summary.features ?? []), ...(w.summary.prediction ? [w.summary.prediction] : [])];
        for (const f of features) {
          for (const kind of ['skew', 'drift'] as const) {
            const measure = f[kind];
            if (measure) {
              this.set(
                { deployment: w.deployment, feature: f.feature, kind, method: measure.method },
                measure.distance,
              );
            }
          }
        }
      }
    },
  });
  new Gauge({
    name: 'mlops_monitoring_feature_threshold',
    help: 'The threshold a feature distance of the latest monitoring window is held to.',
    labelNames: ['deployment', 'feature', 'kind'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const w of await latest()) {
        for (const f of [...(w.summary.features ?? []), ...(w.summary.prediction ? [w.summary.prediction] : [])]) {
          for (const kind of ['skew', 'drift'] as const) {
            const measure = f[kind];
            if (measure) this.set({ deployment: w.deployment, feature: f.feature, kind }, measure.threshold);
          }
        }
      }
    },
  });
  const metricGauge = (name: string, help: string, pick: (s: Partial<WindowSummary>) => WindowSummary['live']) =>
    new Gauge({
      name,
      help,
      labelNames: ['deployment', 'metric'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const w of await latest()) {
          for (const [metric, value] of Object.entries(pick(w.summary) ?? {})) {
            if (Number.isFinite(value)) this.set({ deployment: w.deployment, metric }, value);
          }
        }
      },
    });
  metricGauge(
    'mlops_monitoring_live_metric',
    'A metric of the latest monitoring window from feedback joined to its predictions (AUC, accuracy, RMSE, ...).',
    (s) => s.live,
  );
  metricGauge(
    'mlops_monitoring_estimated_metric',
    'A metric of the latest monitoring window estimated from the logged probabilities alone (before labels).',
    (s) => s.estimated,
  );
  const windowGauge = (name: string, help: string, value: (w: LatestWindow) => number | undefined) =>
    new Gauge({
      name,
      help,
      labelNames: ['deployment'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const w of await latest()) {
          const v = value(w);
          if (v !== undefined && Number.isFinite(v)) this.set({ deployment: w.deployment }, v);
        }
      },
    });
  windowGauge('mlops_monitoring_window_rows', 'Predictions in the latest monitoring window.', (w) => w.summary.rows);
  windowGauge(
    'mlops_monitoring_window_labelled_rows',
    'Predictions with feedback in the latest monitoring window.',
    (w) => w.summary.labelledRows,
  );
  windowGauge('mlops_monitoring_window_breached', '1 when the latest monitoring window breached a threshold.', (w) =>
    w.summary.breached ? 1 : 0,
  );
  windowGauge(
    'mlops_monitoring_window_end_timestamp_seconds',
    'When the latest monitoring window ended (Unix seconds).',
    (w) => w.windowEnd.getTime() / 1000,
  );
}
