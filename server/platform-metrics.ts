/**
 * The platform's own Prometheus metrics, read from Postgres when scraped: pipeline runs started and finished, runs in
 * progress, stage durations, trigger events (schedule actions, new data, monitoring retrains), monitoring windows
 * and their actions. The tables are the record, so every API process reports the same totals, a restart loses
 * nothing, and nothing on the run path has to count.
 *
 * The counters are counts of rows: they only grow while rows are only added (deleting a pipeline's runs reads as a
 * counter reset). Counts of rows that change after they are written are gauges instead: a monitoring window is
 * recomputed in place (its `breached` may flip), and an alert action is `pending` until delivered or given up. A scrape reads one cached snapshot: at most one query every `cacheMs`, never more than one at a
 * time, and a scrape waits at most `refreshTimeoutMs` for it (a slow or absent Postgres leaves the last snapshot in
 * place and counts a failure, so the serving metrics on the same page are still answered).
 *
 * Cardinality is bounded: each label keeps its `maxLabelValues` most frequent values per family (pipelines and
 * deployments by row count; trigger kinds, statuses and stages are few by construction) and folds the others into
 * `_other`.
 */
import { Counter, Gauge, Registry, type Histogram, type Metric } from 'prom-client';
import type { Logger } from '../core/logger.js';
import {
  EMPTY_PLATFORM_STATS,
  readPlatformStats,
  type PlatformStats,
  type StatsQueryable,
} from '../storage/platform-stats.js';

/** Upper bounds of stage durations in seconds: sub-second cached stages up to multi-hour training. */
export const STAGE_DURATION_BUCKETS = [
  0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21_600,
] as const;

/** The label value that stands for every value past a label's cap. */
export const OTHER_LABEL_VALUE = '_other';

/** Run statuses that are still in progress (the others are final). */
const IN_PROGRESS = new Set(['pending', 'running', 'waiting_approval']);

export interface PlatformMetricsOptions {
  /** The platform database (the API's pool): one statement per refresh. */
  readonly pool: StatsQueryable;
  readonly logger: Logger;
  /** How long a snapshot answers scrapes, in ms. Default 5000. */
  readonly cacheMs?: number;
  /** Longest a scrape waits for a refresh before answering with the last snapshot, in ms. Default 2000. */
  readonly refreshTimeoutMs?: number;
  /** Values kept per label and family before the rest fold into `_other`. Default 100. */
  readonly maxLabelValues?: number;
}

/** One series: its labels and its values (the first one ranks label values when they are capped). */
export interface Series<L extends string> {
  readonly labels: Readonly<Record<L, string>>;
  readonly values: readonly number[];
}

/**
 * Keeps, for each label in `capped`, its `max` values with the largest totals (ties by name), renames the others
 * `_other`, and sums the series that then share their labels. The total of each value is preserved.
 */
export function capLabels<L extends string>(
  series: readonly Series<L>[],
  capped: readonly NoInfer<L>[],
  max: number,
): Series<L>[] {
  const kept = new Map<L, Set<string>>();
  for (const label of capped) {
    const totals = new Map<string, number>();
    for (const s of series) totals.set(s.labels[label], (totals.get(s.labels[label]) ?? 0) + (s.values[0] ?? 0));
    if (totals.size <= max) continue;
    const ranked = [...totals].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0));
    kept.set(label, new Set(ranked.slice(0, max).map(([value]) => value)));
  }
  if (kept.size === 0) return [...series];
  const merged = new Map<string, { labels: Record<L, string>; values: number[] }>();
  for (const s of series) {
    const labels: Record<L, string> = { ...s.labels };
    for (const [label, values] of kept) if (!values.has(labels[label])) labels[label] = OTHER_LABEL_VALUE;
    const key = JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)));
    const existing = merged.get(key);
    if (existing) s.values.forEach((v, i) => (existing.values[i] = (existing.values[i] ?? 0) + v));
    else merged.set(key, { labels, values: [...s.values] });
  }
  return [...merged.values()];
}

type HistogramValues = Awaited<ReturnType<Histogram['get']>>['values'];

/**
 * A histogram whose buckets are counted elsewhere (in Postgres) rather than observed one by one. prom-client has no
 * such metric; a Registry needs only `name` and `get()` of one (it renders `help`, `type` and the `values`, whose
 * `metricName` names the `_bucket`, `_sum` and `_count` lines), which is what this class provides.
 */
class CountedHistogram {
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly values: () => Promise<HistogramValues>,
  ) {}

  async get() {
    return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values: await this.values() };
  }

  /** As the prom-client metric it stands for (the library's types list its own classes only). */
  asMetric(): Metric {
    return this as unknown as Metric;
  }
}

/**
 * The platform metrics on a registry of their own, for `GET /metrics` to render after serving's.
 *
 * @example createApp({ ..., metricsRegistries: [new PlatformMetrics({ pool, logger }).registry] })
 */
export class PlatformMetrics {
  /**
   * Names `mlops_pipeline_*`, `mlops_trigger_*`, `mlops_monitoring_windows`, `mlops_monitoring_actions` and
   * `mlops_platform_metrics_*`.
   */
  readonly registry = new Registry();
  readonly #options: Required<Omit<PlatformMetricsOptions, 'pool' | 'logger'>>;
  readonly #pool: StatsQueryable;
  readonly #logger: Logger;
  readonly #refreshFailures: Counter;
  readonly #lastRefresh: Gauge;
  #snapshot: PlatformStats = EMPTY_PLATFORM_STATS;
  #fetchedAt = Number.NEGATIVE_INFINITY;
  #refreshing: Promise<void> | undefined;
  #waiting: Promise<void> | undefined;
  #failing = false;

  constructor(options: PlatformMetricsOptions) {
    this.#pool = options.pool;
    this.#logger = options.logger;
    this.#options = {
      cacheMs: options.cacheMs ?? 5_000,
      refreshTimeoutMs: options.refreshTimeoutMs ?? 2_000,
      maxLabelValues: options.maxLabelValues ?? 100,
    };
    const registers = [this.registry];
    const stats = () => this.#current();
    const cap = <L extends string>(series: Series<L>[], labels: readonly NoInfer<L>[]) =>
      capLabels(series, labels, this.#options.maxLabelValues);

    new Counter({
      name: 'mlops_pipeline_runs_started_total',
      help: 'Pipeline runs started, by pipeline and trigger (http, schedule, new_data, monitoring, ...).',
      labelNames: ['pipeline', 'trigger'],
      registers,
      async collect() {
        const runs = (await stats()).runs.map((r) => ({
          labels: { pipeline: r.pipeline, trigger: r.trigger },
          values: [r.count],
        }));
        setCounter(this, cap(runs, ['pipeline', 'trigger']));
      },
    });
    new Counter({
      name: 'mlops_pipeline_runs_finished_total',
      help:
        'Pipeline runs finished, by pipeline, trigger, final status (succeeded, failed, cancelled) and outcome ' +
        '(deployed, not_blessed, ...; empty when none).',
      labelNames: ['pipeline', 'trigger', 'status', 'outcome'],
      registers,
      async collect() {
        const runs = (await stats()).runs
          .filter((r) => !IN_PROGRESS.has(r.status))
          .map(({ count, ...labels }) => ({ labels, values: [count] }));
        setCounter(this, cap(runs, ['pipeline', 'trigger', 'status', 'outcome']));
      },
    });
    new Gauge({
      name: 'mlops_pipeline_runs_in_progress',
      help: 'Pipeline runs in progress, by pipeline and status (pending, running, waiting_approval).',
      labelNames: ['pipeline', 'status'],
      registers,
      async collect() {
        const runs = (await stats()).runs
          .filter((r) => IN_PROGRESS.has(r.status))
          .map((r) => ({ labels: { pipeline: r.pipeline, status: r.status }, values: [r.count] }));
        setGauge(this, cap(runs, ['pipeline', 'status']));
      },
    });
    const stageDurations = 'mlops_pipeline_stage_duration_seconds';
    const histogram = new CountedHistogram(
      stageDurations,
      'Durations of finished pipeline stages in seconds, by stage and final status (succeeded, failed, cached, ...).',
      async () => {
        const rows = (await stats()).stageDurations.map((r) => ({
          labels: { stage: r.stage, status: r.status, bucket: String(r.bucket) },
          values: [r.count, r.sum],
        }));
        return histogramValues(stageDurations, cap(rows, ['stage', 'status']));
      },
    );
    this.registry.registerMetric(histogram.asMetric());
    new Counter({
      name: 'mlops_trigger_events_total',
      help:
        'Trigger events, by pipeline, kind (schedule, new_data, monitoring) and status (started a run, or skipped: ' +
        'a run in progress, a cooldown).',
      labelNames: ['pipeline', 'kind', 'status'],
      registers,
      async collect() {
        const events = (await stats()).triggerEvents.map(({ count, ...labels }) => ({ labels, values: [count] }));
        setCounter(this, cap(events, ['pipeline', 'kind', 'status']));
      },
    });
    // Gauges, not counters: a recomputed window updates its row (breached may flip) and an action row changes status
    // (an alert is pending, then done or failed), so a series can go down.
    new Gauge({
      name: 'mlops_monitoring_windows',
      help:
        'Monitoring windows stored, by deployment and whether a threshold or floor was breached (a recomputed ' +
        'window moves between the two).',
      labelNames: ['deployment', 'breached'],
      registers,
      async collect() {
        const windows = (await stats()).monitoringWindows.map((w) => ({
          labels: { deployment: w.deployment, breached: String(w.breached) },
          values: [w.count],
        }));
        setGauge(this, cap(windows, ['deployment']));
      },
    });
    new Gauge({
      name: 'mlops_monitoring_actions',
      help:
        'Monitoring actions stored, by deployment, kind (alert, retrain, rollback) and current status (pending, ' +
        'done, skipped, failed).',
      labelNames: ['deployment', 'kind', 'status'],
      registers,
      async collect() {
        const actions = (await stats()).monitoringActions.map(({ count, ...labels }) => ({ labels, values: [count] }));
        setGauge(this, cap(actions, ['deployment', 'kind', 'status']));
      },
    });
    this.#refreshFailures = new Counter({
      name: 'mlops_platform_metrics_refresh_failures_total',
      help: 'Failed or late reads of the platform metrics from Postgres (the last snapshot was served instead).',
      registers,
      // Reported after this scrape's read, like the families it is about.
      async collect() {
        await stats();
      },
    });
    this.#lastRefresh = new Gauge({
      name: 'mlops_platform_metrics_last_refresh_timestamp_seconds',
      help: 'When the platform metrics served were read from Postgres (Unix time; 0: never).',
      registers,
      async collect() {
        await stats();
      },
    });
  }

  /** The cached snapshot, refreshed first when older than `cacheMs` (waiting at most `refreshTimeoutMs`). */
  async #current(): Promise<PlatformStats> {
    if (performance.now() - this.#fetchedAt < this.#options.cacheMs) return this.#snapshot;
    // Every collector of one scrape waits on the same wait, so a late read counts once per scrape.
    this.#waiting ??= this.#waitForRefresh().finally(() => (this.#waiting = undefined));
    await this.#waiting;
    return this.#snapshot;
  }

  async #waitForRefresh(): Promise<void> {
    // At most one read in flight: a scrape during a slow read waits on it rather than starting another.
    this.#refreshing ??= this.#refresh().finally(() => (this.#refreshing = undefined));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.#options.refreshTimeoutMs);
      timer.unref();
    });
    const outcome = await Promise.race([this.#refreshing, late]);
    clearTimeout(timer);
    if (outcome === 'late') this.#refreshFailures.inc();
  }

  async #refresh(): Promise<void> {
    try {
      this.#snapshot = await readPlatformStats(this.#pool, STAGE_DURATION_BUCKETS);
      this.#lastRefresh.set(Date.now() / 1000);
      if (this.#failing) this.#logger.info('platform metrics read from Postgres again');
      this.#failing = false;
    } catch (error) {
      this.#refreshFailures.inc();
      // Once per outage, not once per scrape.
      if (!this.#failing) this.#logger.warn({ err: error }, 'could not read the platform metrics from Postgres');
      this.#failing = true;
    } finally {
      // A failed read waits out the cache period too, so a down database is not asked again on every scrape.
      this.#fetchedAt = performance.now();
    }
  }
}

function setCounter<L extends string>(counter: Counter<L>, series: readonly Series<L>[]): void {
  counter.reset();
  for (const s of series) counter.inc(s.labels as Partial<Record<L, string>>, s.values[0] ?? 0);
}

function setGauge<L extends string>(gauge: Gauge<L>, series: readonly Series<L>[]): void {
  gauge.reset();
  for (const s of series) gauge.set(s.labels as Partial<Record<L, string>>, s.values[0] ?? 0);
}

/** Cumulative `_bucket` series (with `+Inf`), `_sum` and `_count` per stage and status, from per-bucket counts. */
function histogramValues(name: string, rows: readonly Series<'stage' | 'status' | 'bucket'>[]): HistogramValues {
  const groups = new Map<string, { stage: string; status: string; counts: number[]; sum: number }>();
  for (const row of rows) {
    const key = `${row.labels.stage}\u0000${row.labels.status}`;
    let group = groups.get(key);
    if (!group) {
      group = { stage: row.labels.stage, status: row.labels.status, counts: [], sum: 0 };
      groups.set(key, group);
    }
    const bucket = Number(row.labels.bucket);
    group.counts[bucket] = (group.counts[bucket] ?? 0) + (row.values[0] ?? 0);
    group.sum += row.values[1] ?? 0;
  }
  const values: HistogramValues = [];
  for (const { stage, status, counts, sum } of groups.values()) {
    let cumulative = 0;
    STAGE_DURATION_BUCKETS.forEach((le, i) => {
      cumulative += counts[i] ?? 0;
      values.push({ metricName: `${name}_bucket`, labels: { le, stage, status }, value: cumulative });
    });
    const count = counts.reduce((a, b) => a + (b ?? 0), 0);
    values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf', stage, status }, value: count });
    values.push({ metricName: `${name}_sum`, labels: { stage, status }, value: sum });
    values.push({ metricName: `${name}_count`, labels: { stage, status }, value: count });
  }
  return values;
}
