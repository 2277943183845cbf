/**
 * The closed-loop demo (`npm run demo:monitoring`), on a running platform and through its HTTP API as a user would:
 *
 * 1. trains and deploys `flights-monitored`, the flight-delay pipeline over a watched prefix, with monitoring and a
 *    retrain policy (January–March 2001 landed as its first object);
 * 2. replays a sample of April, May and June 2001 through the predict API month by month, one instance per request
 *    (so each true label can be sent back by request id), and computes a monitoring window over each month's
 *    replay: skew against the training snapshot and drift against the previous month, per feature, and the
 *    performance estimated from the logged probabilities alone;
 * 3. sends the true labels (`delay > 15`) as feedback and computes the window again: the realized metrics beside the
 *    estimate;
 * 4. lands a batch with a deliberate, documented shift (June flights with `distance × 1.8`: the same airports,
 *    routes flown as if 80 % longer), replays it, and shows the monitor flagging `distance` (and only it) and starting
 *    one retraining run, which is validated against the champion.
 *
 * Monitoring windows are computed on demand (`POST /v1/deployments/{name}/monitoring/windows`) over each replay's
 * wall-clock span, so the demo takes minutes instead of months; the hourly schedule does the same thing unattended.
 */
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { DataEngine, sqlString } from '../data/engine.js';
import type { WindowSummary } from '../monitoring/types.js';
import { DEMO_SPAN, runFlightsDemo, type DemoDeps, type DemoReport } from './flights.js';
import { flightsFile, landFlights } from './landing.js';

export const MONITORED_PIPELINE = 'flights-monitored';
const LANDING_PREFIX = 'landing/flights-monitored/';

/** The shift the demo lands: what it changes, as SQL over flights-3m's columns, and in words. */
export const DEMO_SHIFT = {
  columns: '* REPLACE (distance * 1.8 AS distance)',
  description: 'June 2001 flights with distance × 1.8 (the same airports and hours; routes flown as if 80 % longer)',
} as const;

const MONTHS = [
  { name: 'April 2001', from: '2001-04-01', to: '2001-05-01' },
  { name: 'May 2001', from: '2001-05-01', to: '2001-06-01' },
  { name: 'June 2001', from: '2001-06-01', to: '2001-07-01' },
] as const;

export interface MonitoringDemoOptions {
  /** The API's base URL and a key with read, predict, trigger and deploy scopes (the admin key does). */
  readonly api: { readonly url: string; readonly key: string };
  /** Instances replayed per month; default 3000. */
  readonly rowsPerMonth?: number;
  /** Concurrent predict requests; default 16. */
  readonly concurrency?: number;
  readonly onProgress?: (line: string) => void;
  readonly signal?: AbortSignal;
}

export interface ReplayedMonth {
  readonly month: string;
  readonly requests: number;
  readonly replayMs: number;
  /** The window over the replay before feedback (estimated metrics only), and after it (realized metrics). */
  readonly beforeFeedback: WindowSummary;
  readonly afterFeedback: WindowSummary;
}

export interface MonitoringDemoReport {
  readonly deployment: string;
  readonly first: DemoReport;
  readonly months: readonly ReplayedMonth[];
  readonly shifted: {
    readonly window: WindowSummary;
    /** What the window's retrain action did (run started, or skipped with why). */
    readonly retrain?: { readonly status: string; readonly reason: string; readonly runId?: string };
    /** The retraining run's outcome, once it finished. */
    readonly runOutcome?: string;
    /** From asking for the shifted window (its computation included) to the retraining run's start. */
    readonly breachToRunMs?: number;
  };
}

interface Instance {
  readonly hour: number;
  readonly day_of_week: number;
  readonly distance: number;
  readonly origin: string;
  readonly destination: string;
}

interface LabelledInstance {
  readonly instance: Instance;
  readonly delayed: boolean;
}

/** The definition's changes for the monitored pipeline: a watched prefix, monitoring and a retrain policy. */
export function monitoredDefinition(bucket: string) {
  return {
    description:
      'Demo (closed loop): will a flight be more than 15 minutes late? Flights landed month by month under a ' +
      'prefix; trained on the 60 days before the latest 15, evaluated on those 15; monitored, retrained on a breach.',
    source: { uri: `s3://${bucket}/${LANDING_PREFIX}*.parquet` },
    // The latest 15 days of the landed data evaluate, the 60 before them train: a run after new data lands trains
    // on it (the spans are resolved when the run starts and kept on the run).
    split: undefined,
    window: { column: 'date', trainDays: 60, evalDays: 15 },
    monitoring: {
      everySeconds: 3600,
      minRows: 500,
      thresholds: { skew: 0.1, drift: 0.1 },
      retrain: { cooldownSeconds: 3600 },
    },
  };
}

export async function runMonitoringDemo(deps: DemoDeps, options: MonitoringDemoOptions): Promise<MonitoringDemoReport> {
  const progress = options.onProgress ?? (() => {});
  const api = apiClient(options.api);
  const bucket = deps.storage.artifacts.bucket;
  const rowsPerMonth = options.rowsPerMonth ?? 3000;

  progress(`1. train and deploy ${MONITORED_PIPELINE} on January–March 2001`);
  const first = await runFlightsDemo(deps, {
    pipeline: MONITORED_PIPELINE,
    landing: { key: `${LANDING_PREFIX}2001-q1.parquet`, ...DEMO_SPAN },
    definition: monitoredDefinition(bucket),
    ...(options.signal ? { signal: options.signal } : {}),
    onProgress: progress,
  });
  const deployment = MONITORED_PIPELINE;
  progress(`   ${first.result.outcome}: ${first.result.model.modelName} v${first.result.model.version}`);

  const months: ReplayedMonth[] = [];
  let lastEnd = 0;
  for (const month of MONTHS) {
    options.signal?.throwIfAborted();
    progress(`2. replay ${rowsPerMonth.toLocaleString('en-US')} flights of ${month.name} through the predict API`);
    const rows = await sampleFlights(month, rowsPerMonth);
    const tag = `${month.from.slice(0, 7)}-${Date.now().toString(36)}`;
    const replayed = await replay(api, deployment, rows, tag, options.concurrency ?? 16, lastEnd);
    lastEnd = replayed.endMs;
    const span = { windowEnd: replayed.end, windowSeconds: replayed.seconds };
    const beforeFeedback = await api.computeWindow(deployment, span);
    progress(formatWindow(`${month.name}, before feedback`, beforeFeedback));
    await api.feedback(rows.map((row, i) => ({ requestId: `${tag}-${i}`, label: row.delayed })));
    const afterFeedback = await api.computeWindow(deployment, span);
    progress(formatWindow(`${month.name}, after feedback`, afterFeedback));
    months.push({ month: month.name, requests: rows.length, replayMs: replayed.ms, beforeFeedback, afterFeedback });
    if (month.from !== '2001-06-01') {
      // The month's data lands in the watched prefix, as a month's flights would: a retraining run's sliding window
      // reaches it. June lands below, shifted.
      const landed = await landFlights({
        s3: deps.storage.artifacts.client,
        bucket,
        region: deps.storage.artifacts.region,
        key: `${LANDING_PREFIX}${month.from.slice(0, 7)}.parquet`,
        span: month,
      });
      progress(`   landed ${landed.uri} (${landed.rows.toLocaleString('en-US')} rows)`);
    }
  }

  progress(`3. land a shifted batch: ${DEMO_SHIFT.description}`);
  await landFlights({
    s3: deps.storage.artifacts.client,
    bucket,
    region: deps.storage.artifacts.region,
    key: `${LANDING_PREFIX}2001-06-shifted.parquet`,
    span: { from: '2001-06-01', to: '2001-07-01' },
    columns: DEMO_SHIFT.columns,
  });
  const shiftedRows = await sampleFlights({ from: '2001-06-01', to: '2001-07-01' }, rowsPerMonth, 1.8);
  const tag = `2001-06-shifted-${Date.now().toString(36)}`;
  const shiftedReplay = await replay(api, deployment, shiftedRows, tag, options.concurrency ?? 16, lastEnd);
  const requestedAt = Date.now();
  const window = await api.computeWindow(deployment, {
    windowEnd: shiftedReplay.end,
    windowSeconds: shiftedReplay.seconds,
  });
  progress(formatWindow('the shifted batch', window));
  const detail = await api.windowDetail(deployment, window.windowId);
  const retrain = detail.actions.find((a) => a.kind === 'retrain');
  const runId = typeof retrain?.details?.runId === 'string' ? retrain.details.runId : undefined;
  let runOutcome: string | undefined;
  let breachToRunMs: number | undefined;
  if (retrain) progress(`   retrain: ${retrain.status} (${retrain.reason})`);
  if (runId) {
    const run = await api.run(runId);
    // An upper bound: from asking for the window (computing it included) to the run's start.
    breachToRunMs = Date.parse(run.startedAt) - requestedAt;
    progress(`   waiting for the retraining run ${runId}`);
    runOutcome = await api.waitForRun(runId, options.signal);
    progress(`   the retraining run finished: ${runOutcome}`);
  }
  return {
    deployment,
    first,
    months,
    shifted: {
      window,
      ...(retrain ? { retrain: { status: retrain.status, reason: retrain.reason, ...(runId ? { runId } : {}) } } : {}),
      ...(runOutcome ? { runOutcome } : {}),
      ...(breachToRunMs !== undefined ? { breachToRunMs } : {}),
    },
  };
}

/** A seeded sample of a month of flights-3m, as predict instances (the pipeline's features) and labels. */
async function sampleFlights(
  span: { readonly from: string; readonly to: string },
  rows: number,
  distanceFactor = 1,
): Promise<LabelledInstance[]> {
  const source = flightsFile();
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-demo-sample-'));
  try {
    const engine = await DataEngine.open({ workDir, readableDirs: [path.dirname(source)] });
    try {
      const sampled = await engine.rows<{
        hour: number;
        day_of_week: number;
        distance: number;
        origin: string;
        destination: string;
        delayed: boolean;
      }>(
        `SELECT hour(date)::INTEGER AS hour, dayofweek(date)::INTEGER AS day_of_week, ` +
          `(distance * ${Number(distanceFactor)})::DOUBLE AS distance, origin, destination, delay > 15 AS delayed ` +
          // DuckDB samples a table before its WHERE: the month is selected first, then sampled.
          `FROM (SELECT * FROM read_parquet(${sqlString(source)}) ` +
          `WHERE date >= TIMESTAMP ${sqlString(span.from)} AND date < TIMESTAMP ${sqlString(span.to)}) ` +
          `USING SAMPLE reservoir(${Math.trunc(rows)} ROWS) REPEATABLE (42)`,
      );
      return sampled.map(({ delayed, ...instance }) => ({ instance, delayed: Boolean(delayed) }));
    } finally {
      engine.close();
    }
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

/** The shortest monitoring window the API computes, in seconds. */
const MIN_WINDOW_SECONDS = 10;

/**
 * Sends each instance as its own predict request, with request ids `<tag>-<i>`, and returns the window that holds the
 * replay and nothing else: it starts on a whole second after `notBefore` (the previous window's end) and lasts at
 * least the shortest window.
 */
async function replay(
  api: ApiClient,
  deployment: string,
  rows: readonly LabelledInstance[],
  tag: string,
  concurrency: number,
  notBefore: number,
) {
  const startMs = Math.max(notBefore, Math.ceil(Date.now() / 1000) * 1000 + 1000);
  await sleep(startMs - Date.now());
  const began = performance.now();
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < rows.length; i = next++) await api.predict(deployment, rows[i]!.instance, `${tag}-${i}`);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const ms = performance.now() - began;
  const endMs = Math.max(Math.ceil((Date.now() + 1) / 1000) * 1000, startMs + MIN_WINDOW_SECONDS * 1000);
  // The prediction log is written in batches a moment later (PREDICTION_LOG_FLUSH_MS): wait for it to land.
  await sleep(endMs - Date.now() + 1500);
  return { end: new Date(endMs).toISOString(), endMs, seconds: Math.round((endMs - startMs) / 1000), ms };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

// ---------------------------------------------------------------------------------------------------------------
// The HTTP API, as a user's script calls it

interface MonitoringAction {
  readonly kind: string;
  readonly status: string;
  readonly reason: string;
  readonly details?: Record<string, unknown> | null;
}

type ApiClient = ReturnType<typeof apiClient>;

function apiClient(api: { url: string; key: string }) {
  const base = api.url.replace(/\/$/, '');
  const call = async <T>(method: string, route: string, body?: unknown, headers: Record<string, string> = {}) => {
    const response = await fetch(`${base}${route}`, {
      method,
      headers: {
        authorization: `Bearer ${api.key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${route} answered ${response.status}: ${text.slice(0, 500)}`);
    return (text ? JSON.parse(text) : undefined) as T;
  };
  return {
    predict: (deployment: string, instance: Instance, requestId: string) =>
      call('POST', `/v1/models/${encodeURIComponent(deployment)}/predict`, { instance }, { 'x-request-id': requestId }),
    feedback: async (items: readonly { requestId: string; label: string | number | boolean }[]) => {
      for (let i = 0; i < items.length; i += 10_000) {
        await call('POST', '/v1/feedback', { items: items.slice(i, i + 10_000) });
      }
    },
    computeWindow: (deployment: string, span: { windowEnd: string; windowSeconds: number }) =>
      call<WindowSummary>('POST', `/v1/deployments/${encodeURIComponent(deployment)}/monitoring/windows`, span),
    windowDetail: (deployment: string, windowId: string) =>
      call<{ actions: MonitoringAction[] }>(
        'GET',
        `/v1/deployments/${encodeURIComponent(deployment)}/monitoring/${encodeURIComponent(windowId)}`,
      ),
    run: (runId: string) =>
      call<{ status: string; outcome?: string | null; startedAt: string }>('GET', `/v1/runs/${runId}`),
    waitForRun: async (runId: string, signal?: AbortSignal): Promise<string> => {
      for (;;) {
        signal?.throwIfAborted();
        const run = await call<{ status: string; outcome?: string | null }>('GET', `/v1/runs/${runId}`);
        if (!['pending', 'running', 'waiting_approval'].includes(run.status)) return run.outcome ?? run.status;
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Printing

const fixed = (x: number | undefined, digits = 3) => (x === undefined ? '—' : x.toFixed(digits));

/** One window as printed: distances per feature (flagged over threshold), estimated and realized metrics. */
export function formatWindow(title: string, w: WindowSummary): string {
  const lines = [`   ${title}: ${w.rows.toLocaleString('en-US')} predictions, ${w.labelledRows} labelled`];
  for (const f of w.features) {
    const mark = (m: { distance: number; breached: boolean } | undefined) =>
      m ? `${fixed(m.distance)}${m.breached ? ' ▲' : ''}` : '—';
    lines.push(
      `     ${f.feature.padEnd(12)} skew ${mark(f.skew).padEnd(8)} drift ${mark(f.drift).padEnd(8)}` +
        (f.unseenCategories?.length ? ` unseen ${f.unseenCategories.slice(0, 3).join(', ')}` : ''),
    );
  }
  const metric = (name: string) =>
    `${name} est ${fixed(w.estimated?.[name])} / real ${fixed(w.live?.[name])} / eval ${fixed(w.evaluation[name])}`;
  lines.push(`     ${metric('auc')} · ${metric('accuracy')}`);
  if (w.breached)
    lines.push(
      `     breached: ${w.breaches.map((b) => `${b.kind} ${b.subject} ${fixed(b.value)} > ${b.threshold}`).join(', ')}`,
    );
  return lines.join('\n');
}

/** The demo's summary, as printed: month by month, then the shift and what the monitor did about it. */
export function formatMonitoringReport(report: MonitoringDemoReport): string {
  const lines = [
    `Closed loop on ${report.deployment}: month by month (largest distance of any feature; estimated before labels, ` +
      'realized after)',
    `  ${'window'.padEnd(12)} ${'rows'.padStart(6)}  ${'max skew'.padEnd(20)} ${'max drift'.padEnd(20)} ` +
      'AUC est / real     accuracy est / real',
  ];
  const largest = (w: WindowSummary, kind: 'skew' | 'drift') => {
    let best: { feature: string; distance: number } | undefined;
    for (const f of w.features) {
      const d = f[kind]?.distance;
      if (d !== undefined && (!best || d > best.distance)) best = { feature: f.feature, distance: d };
    }
    return best ? `${best.feature} ${best.distance.toFixed(3)}` : '—';
  };
  const row = (name: string, before: WindowSummary, after?: WindowSummary) =>
    `  ${name.padEnd(12)} ${String(before.rows).padStart(6)}  ${largest(before, 'skew').padEnd(20)} ` +
    `${largest(before, 'drift').padEnd(20)} ${fixed(before.estimated?.auc)} / ${fixed(after?.live?.auc)}      ` +
    `${fixed(before.estimated?.accuracy)} / ${fixed(after?.live?.accuracy)}`;
  for (const m of report.months) lines.push(row(m.month, m.beforeFeedback, m.afterFeedback));
  const { shifted } = report;
  lines.push(row('shifted', shifted.window));
  lines.push(
    `  breached  ${shifted.window.breached ? shifted.window.breaches.map((b) => `${b.kind} ${b.subject} ${fixed(b.value)} > ${b.threshold}`).join(', ') : 'nothing'}`,
  );
  if (shifted.retrain) lines.push(`  retrain   ${shifted.retrain.status}: ${shifted.retrain.reason}`);
  if (shifted.breachToRunMs !== undefined)
    lines.push(
      `  took      ${(shifted.breachToRunMs / 1000).toFixed(1)} s from asking for the window to the run's start`,
    );
  if (shifted.runOutcome)
    lines.push(`  run       ${shifted.runOutcome} (validated against the champion on the newer window)`);
  return lines.join('\n');
}
