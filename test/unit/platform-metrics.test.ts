/**
 * The platform metrics collector over a stand-in for Postgres: label caps, the histogram built from bucket counts,
 * the cache and single flight, and a database that fails or hangs (the page is still answered, the failure counted).
 * test/integration/platform-metrics.test.ts reads the real tables.
 */
import { describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../core/logger.js';
import {
  capLabels,
  OTHER_LABEL_VALUE,
  PlatformMetrics,
  STAGE_DURATION_BUCKETS,
} from '../../server/platform-metrics.js';
import type { PlatformStats } from '../../storage/platform-stats.js';
import { parsePrometheusText, sampleValue } from '../support/prometheus-text.js';

const STATS: PlatformStats = {
  runs: [
    { pipeline: 'churn', trigger: 'http', status: 'succeeded', outcome: 'deployed', count: 3 },
    { pipeline: 'churn', trigger: 'schedule', status: 'failed', outcome: '', count: 1 },
    { pipeline: 'churn', trigger: 'schedule', status: 'running', outcome: '', count: 1 },
    { pipeline: 'fraud', trigger: 'new_data', status: 'waiting_approval', outcome: '', count: 2 },
    { pipeline: 'ads', trigger: 'http', status: 'cancelled', outcome: '', count: 1 },
  ],
  stageDurations: [
    // Two `train` stages within 0.5 s, one above the last bound; one failed `ingest` of exactly 10 s (bucket 5).
    { stage: 'train', status: 'succeeded', bucket: 1, count: 2, sum: 0.6 },
    { stage: 'train', status: 'succeeded', bucket: STAGE_DURATION_BUCKETS.length, count: 1, sum: 30_000 },
    { stage: 'ingest', status: 'failed', bucket: 5, count: 1, sum: 10 },
  ],
  triggerEvents: [
    { pipeline: 'churn', kind: 'schedule', status: 'started', count: 4 },
    { pipeline: 'churn', kind: 'schedule', status: 'skipped', count: 1 },
  ],
  monitoringWindows: [
    { deployment: 'churn', breached: false, count: 5 },
    { deployment: 'churn', breached: true, count: 1 },
  ],
  monitoringActions: [{ deployment: 'churn', kind: 'retrain', status: 'done', count: 1 }],
};

const logger = createLogger({ level: 'silent' });

/** A pool answering the stats statement like Postgres would (one row of JSON columns). */
function fakePool(stats: PlatformStats = STATS) {
  return {
    query: vi.fn(async () => ({
      rows: [
        {
          runs: stats.runs,
          stage_durations: stats.stageDurations,
          trigger_events: stats.triggerEvents,
          monitoring_windows: stats.monitoringWindows,
          monitoring_actions: stats.monitoringActions,
        },
      ],
    })),
  };
}

async function scrape(metrics: PlatformMetrics) {
  return parsePrometheusText(await metrics.registry.metrics());
}

describe('capLabels', () => {
  const series = [
    { labels: { pipeline: 'a', status: 'ok' }, values: [5, 1] },
    { labels: { pipeline: 'b', status: 'ok' }, values: [3, 1] },
    { labels: { pipeline: 'c', status: 'ok' }, values: [2, 1] },
    { labels: { pipeline: 'd', status: 'ok' }, values: [2, 1] },
    { labels: { pipeline: 'd', status: 'failed' }, values: [1, 1] },
  ];

  it('keeps the most frequent values, folds the others into _other and preserves the totals', () => {
    const capped = capLabels(series, ['pipeline'], 2);
    expect(capped).toEqual([
      { labels: { pipeline: 'a', status: 'ok' }, values: [5, 1] },
      { labels: { pipeline: 'b', status: 'ok' }, values: [3, 1] },
      { labels: { pipeline: OTHER_LABEL_VALUE, status: 'ok' }, values: [4, 2] },
      { labels: { pipeline: OTHER_LABEL_VALUE, status: 'failed' }, values: [1, 1] },
    ]);
  });

  it('breaks ties by name and leaves labels under their cap alone', () => {
    // d has 3 in all (as many as b, which sorts first), c 2: d is kept third.
    expect(capLabels(series, ['pipeline'], 3).map((s) => s.labels.pipeline)).toEqual([
      'a',
      'b',
      OTHER_LABEL_VALUE,
      'd',
      'd',
    ]);
    expect(capLabels(series, ['pipeline', 'status'], 4)).toEqual(series);
  });
});

describe('PlatformMetrics', () => {
  it('exposes runs, stage durations, trigger events and monitoring as valid Prometheus text', async () => {
    const metrics = new PlatformMetrics({ pool: fakePool(), logger });
    const page = await scrape(metrics);
    expect([...page.keys()]).toEqual([
      'mlops_pipeline_runs_started_total',
      'mlops_pipeline_runs_finished_total',
      'mlops_pipeline_runs_in_progress',
      'mlops_pipeline_stage_duration_seconds',
      'mlops_trigger_events_total',
      'mlops_monitoring_windows',
      'mlops_monitoring_actions',
      'mlops_platform_metrics_refresh_failures_total',
      'mlops_platform_metrics_last_refresh_timestamp_seconds',
    ]);
    const started = 'mlops_pipeline_runs_started_total';
    expect(sampleValue(page, started, { pipeline: 'churn', trigger: 'http' })).toBe(3);
    expect(sampleValue(page, started, { pipeline: 'churn', trigger: 'schedule' })).toBe(2);
    const finished = 'mlops_pipeline_runs_finished_total';
    expect(page.get(finished)?.samples).toHaveLength(3);
    expect(sampleValue(page, finished, { pipeline: 'ads', trigger: 'http', status: 'cancelled', outcome: '' })).toBe(1);
    const inProgress = 'mlops_pipeline_runs_in_progress';
    expect(page.get(inProgress)?.type).toBe('gauge');
    expect(sampleValue(page, inProgress, { pipeline: 'fraud', status: 'waiting_approval' })).toBe(2);
    expect(sampleValue(page, inProgress, { pipeline: 'churn', status: 'running' })).toBe(1);

    const stage = 'mlops_pipeline_stage_duration_seconds';
    expect(page.get(stage)?.type).toBe('histogram');
    const bucket = (labels: Record<string, string>) => sampleValue(page, stage, labels, `${stage}_bucket`);
    const train = { stage: 'train', status: 'succeeded' };
    expect(bucket({ ...train, le: '0.1' })).toBe(0);
    expect(bucket({ ...train, le: '0.5' })).toBe(2);
    expect(bucket({ ...train, le: '21600' })).toBe(2);
    expect(bucket({ ...train, le: '+Inf' })).toBe(3);
    expect(sampleValue(page, stage, train, `${stage}_sum`)).toBeCloseTo(30_000.6);
    expect(sampleValue(page, stage, train, `${stage}_count`)).toBe(3);
    const ingest = { stage: 'ingest', status: 'failed' };
    expect(bucket({ ...ingest, le: '5' })).toBe(0);
    expect(bucket({ ...ingest, le: '10' })).toBe(1);

    expect(
      sampleValue(page, 'mlops_trigger_events_total', { pipeline: 'churn', kind: 'schedule', status: 'skipped' }),
    ).toBe(1);
    // Gauges: a recomputed window's breach flips, an alert goes from pending to done, so these go down as well as up.
    expect(page.get('mlops_monitoring_windows')?.type).toBe('gauge');
    expect(page.get('mlops_monitoring_actions')?.type).toBe('gauge');
    expect(sampleValue(page, 'mlops_monitoring_windows', { deployment: 'churn', breached: 'true' })).toBe(1);
    expect(
      sampleValue(page, 'mlops_monitoring_actions', { deployment: 'churn', kind: 'retrain', status: 'done' }),
    ).toBe(1);
    expect(sampleValue(page, 'mlops_platform_metrics_refresh_failures_total', {})).toBe(0);
    expect(sampleValue(page, 'mlops_platform_metrics_last_refresh_timestamp_seconds', {})).toBeGreaterThan(1.7e9);
  });

  it('folds pipelines past the cap into _other', async () => {
    const page = await scrape(new PlatformMetrics({ pool: fakePool(), logger, maxLabelValues: 1 }));
    const started = page.get('mlops_pipeline_runs_started_total')!.samples;
    expect(new Set(started.map((s) => s.labels.pipeline))).toEqual(new Set(['churn', OTHER_LABEL_VALUE]));
    expect(started.reduce((total, s) => total + s.value, 0)).toBe(8);
  });

  it('reads Postgres once per cache period, however many scrapes come in', async () => {
    const pool = fakePool();
    const cached = new PlatformMetrics({ pool, logger, cacheMs: 60_000 });
    await Promise.all([cached.registry.metrics(), cached.registry.metrics()]);
    await cached.registry.metrics();
    expect(pool.query).toHaveBeenCalledTimes(1);

    const uncached = fakePool();
    const fresh = new PlatformMetrics({ pool: uncached, logger, cacheMs: 0 });
    await fresh.registry.metrics();
    await fresh.registry.metrics();
    expect(uncached.query).toHaveBeenCalledTimes(2);
  });

  it('answers with the last snapshot and counts a failure when Postgres fails, warning once per outage', async () => {
    const pool = fakePool();
    const warnings = createLogger({ level: 'silent' });
    const warn = vi.spyOn(warnings, 'warn');
    const metrics = new PlatformMetrics({ pool, logger: warnings, cacheMs: 0 });
    await metrics.registry.metrics();
    pool.query.mockRejectedValue(new Error('connection refused'));
    await metrics.registry.metrics();
    const page = await scrape(metrics);
    expect(sampleValue(page, 'mlops_platform_metrics_refresh_failures_total', {})).toBe(2);
    expect(sampleValue(page, 'mlops_pipeline_runs_started_total', { pipeline: 'churn', trigger: 'http' })).toBe(3);
    expect(warn).toHaveBeenCalledTimes(1);
  });

  it('does not wait past refreshTimeoutMs for a hanging database, nor ask it again meanwhile', async () => {
    const query = vi.fn(() => new Promise<never>(() => undefined));
    const metrics = new PlatformMetrics({ pool: { query }, logger, cacheMs: 0, refreshTimeoutMs: 50 });
    const started = performance.now();
    const page = await scrape(metrics);
    await metrics.registry.metrics();
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(query).toHaveBeenCalledTimes(1);
    expect(sampleValue(page, 'mlops_platform_metrics_refresh_failures_total', {})).toBe(1);
    expect(page.get('mlops_pipeline_runs_started_total')?.samples).toEqual([]);
  });
});
