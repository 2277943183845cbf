/**
 * The prediction log writer over fake sinks: the request path never waits, sampling and the bounded queue are
 * counted, rows are written in order in batches, retried after failures (one warning per outage) and isolated when
 * Postgres refuses them; close is bounded.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Logger } from '../../../core/logger.js';
import { ServingMetrics } from '../../../serving/metrics.js';
import {
  isRejectedRowsError,
  PredictionLogWriter,
  type PredictionLogWriterOptions,
} from '../../../serving/prediction-log.js';
import {
  shadowLogRecord,
  type PredictionLogRecord,
  type PredictionLogRow,
} from '../../../serving/prediction-log-records.js';

const writers: PredictionLogWriter[] = [];

afterEach(async () => {
  await Promise.all(writers.splice(0).map((w) => w.close(100)));
});

const MODEL = { name: 'delays', version: 3, versionId: '00000000-0000-4000-8000-000000000003' };

let sequence = 0;
function record(rows = 1, extra: Partial<PredictionLogRecord> = {}): PredictionLogRecord {
  const id = `req-${++sequence}`;
  return {
    requestId: id,
    loggedAt: 1_700_000_000_000 + sequence,
    deployment: 'delays',
    model: MODEL,
    role: 'champion',
    instances: Array.from({ length: rows }, (_, i) => ({ x: i, id })),
    outputs: Array.from({ length: rows }, (_, i) => `{"label":${i % 2},"probabilities":[0.5,0.5]}`),
    latencyMs: 1.5,
    ...extra,
  };
}

/** A sink recording each batch; `fail(batch)` returning an error makes that call reject with it. */
function recordingSink(
  fail: (batch: readonly PredictionLogRow[], call: number) => Error | undefined = () => undefined,
) {
  const batches: PredictionLogRow[][] = [];
  let calls = 0;
  const write = (rows: readonly PredictionLogRow[]) => {
    calls++;
    const error = fail(rows, calls);
    if (error) return Promise.reject(error);
    batches.push([...rows]);
    return Promise.resolve();
  };
  return {
    write,
    batches,
    rows: () => batches.flat(),
    get calls() {
      return calls;
    },
  };
}

/** A sink whose every write takes `ms`; `starts` records when each began (performance.now()). */
function slowSink(ms: number) {
  const starts: number[] = [];
  const write = async (): Promise<void> => {
    starts.push(performance.now());
    await new Promise((resolve) => setTimeout(resolve, ms));
  };
  return { write, starts };
}

function fakeLogger() {
  const logger = { warn: vi.fn(), info: vi.fn(), debug: vi.fn(), error: vi.fn() };
  return { logger: logger as unknown as Logger, ...logger };
}

function writer(options: PredictionLogWriterOptions): PredictionLogWriter {
  const w = new PredictionLogWriter(options);
  writers.push(w);
  return w;
}

/** mulberry32: a seeded generator, so the sampling test is reproducible. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function counter(metric: { get(): Promise<{ values: { value: number }[] }> }): Promise<number> {
  return (await metric.get()).values.reduce((n, v) => n + v.value, 0);
}

describe('PredictionLogWriter', () => {
  it('keeps a queued request as JSON text: later changes to its instances do not reach the log', async () => {
    const sink = recordingSink();
    const w = writer({ write: sink.write, batchSize: 4, flushMs: 5 });
    const instances = [{ x: 1, kind: 'a' }, { x: null }];
    expect(w.enqueue(record(2, { instances, outputs: ['{"prediction":1}', null] }))).toBe(true);
    instances[0]!.x = 99;
    await vi.waitFor(() => expect(sink.rows()).toHaveLength(2));
    expect(sink.rows().map((row) => [row.features, row.outputs])).toEqual([
      ['{"x":1,"kind":"a"}', '{"prediction":1}'],
      ['{"x":null}', null],
    ]);
  });

  it('counts a request whose instances cannot be serialised as rejected, and never throws', async () => {
    const sink = recordingSink();
    const w = writer({ write: sink.write, batchSize: 4, flushMs: 5, logger: fakeLogger().logger });
    expect(w.enqueue(record(1, { instances: [{ big: 1n }] }))).toBe(false);
    expect(w.enqueue(record(1))).toBe(true);
    await vi.waitFor(() => expect(sink.rows()).toHaveLength(1));
    expect(w.stats).toMatchObject({ written: 1, rejected: 1, dropped: 0 });
  });

  it('writes one row per instance, in order, in batches of at most batchSize', async () => {
    const sink = recordingSink();
    const w = writer({ write: sink.write, batchSize: 4, flushMs: 5 });
    const records = [record(1), record(3), record(2), record(1), record(4), record(1)];
    for (const r of records) expect(w.enqueue(r)).toBe(true);
    await vi.waitFor(() => expect(sink.rows()).toHaveLength(12));
    const expected = records.flatMap((r) => r.instances.map((features, i) => ({ r, features, i })));
    expect(sink.rows().map((row) => [row.requestId, row.features])).toEqual(
      expected.map(({ r, features }) => [r.requestId, JSON.stringify(features)]),
    );
    // Whole requests per batch, never more than batchSize rows.
    for (const batch of sink.batches) expect(batch.length).toBeLessThanOrEqual(4);
    expect(sink.rows()[1]).toEqual({
      requestId: records[1]!.requestId,
      loggedAt: records[1]!.loggedAt,
      deployment: 'delays',
      model: 'delays',
      versionId: MODEL.versionId,
      version: 3,
      role: 'champion',
      features: JSON.stringify(records[1]!.instances[0]),
      outputs: records[1]!.outputs![0],
      latencyMs: 1.5,
      error: null,
    });
    expect(w.stats).toMatchObject({ depth: 0, written: 12, dropped: 0 });
  });

  it('rests between batches so that writing takes at most maxBusyShare of the time', async () => {
    const { write, starts } = slowSink(30);
    const w = writer({ write, batchSize: 2, flushMs: 1, maxBusyShare: 0.5 });
    for (let i = 0; i < 8; i++) w.enqueue(record(1));
    await vi.waitFor(() => expect(w.stats.written).toBe(8), { timeout: 2_000 });
    expect(starts).toHaveLength(4);
    // Each write took about 30 ms, so each batch starts about 30 ms (write) + 30 ms (rest) after the last; back to
    // back they would be 30 ms apart. (Timers may fire a millisecond early by performance.now(): a margin.)
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(55);
  });

  it('does not rest while closing: what is queued is written back to back', async () => {
    const { write, starts } = slowSink(20);
    // At this share, a 20 ms write is followed by a 1.98 s rest.
    const w = writer({ write, batchSize: 1, flushMs: 1, maxBusyShare: 0.01 });
    for (let i = 0; i < 5; i++) w.enqueue(record(1));
    await vi.waitFor(() => expect(starts).toHaveLength(1));
    const stats = await w.close(5_000);
    expect(stats).toMatchObject({ written: 5, dropped: 0, depth: 0 });
    expect(starts.at(-1)! - starts[0]!).toBeLessThan(1_900);
  });

  it('writes a full batch at once, without waiting for the flush interval', async () => {
    const sink = recordingSink();
    const w = writer({ write: sink.write, batchSize: 10, flushMs: 60_000 });
    for (let i = 0; i < 9; i++) w.enqueue(record());
    await new Promise((r) => setTimeout(r, 30));
    expect(sink.calls).toBe(0);
    w.enqueue(record());
    await vi.waitFor(() => expect(sink.rows()).toHaveLength(10), { timeout: 1_000 });
  });

  it('never waits on the sink: enqueue returns at once while Postgres hangs, and overflow is counted', async () => {
    const metrics = new ServingMetrics({ defaultMetrics: false });
    const pending: (() => void)[] = [];
    const w = writer({
      write: () => new Promise<void>((resolve) => pending.push(resolve)),
      queueSize: 1_000,
      batchSize: 100,
      flushMs: 1,
      metrics,
    });
    const started = performance.now();
    let queued = 0;
    for (let i = 0; i < 5_000; i++) if (w.enqueue(record())) queued++;
    const elapsed = performance.now() - started;
    expect(elapsed).toBeLessThan(250);
    expect(queued).toBe(1_000);
    expect(w.stats).toMatchObject({ depth: 1_000, dropped: 4_000, written: 0 });
    expect(await counter(metrics.droppedLogs)).toBe(4_000);
    expect(await counter(metrics.logQueueDepth)).toBe(1_000);
    // Closing gives up after its bound; what is left is counted as dropped, not lost silently.
    const stats = await w.close(50);
    expect(stats).toMatchObject({ depth: 0, written: 0, dropped: 5_000 });
    for (const resolve of pending) resolve();
  });

  it('drops a request whose rows do not all fit, and keeps what is queued', async () => {
    const sink = recordingSink();
    const w = writer({ write: sink.write, queueSize: 5, flushMs: 60_000 });
    const a = record(2);
    const b = record(2);
    expect(w.enqueue(a)).toBe(true);
    expect(w.enqueue(b)).toBe(true);
    expect(w.enqueue(record(2))).toBe(false);
    const c = record(1);
    expect(w.enqueue(c)).toBe(true);
    expect(w.enqueue(record(1))).toBe(false);
    expect(w.stats).toMatchObject({ depth: 5, dropped: 3 });
    await w.close(1_000);
    expect(sink.rows().map((r) => r.requestId)).toEqual([a, a, b, b, c].map((r) => r.requestId));
  });

  it('samples requests at the configured rate (all instances of a sampled request)', async () => {
    const sink = recordingSink();
    const random = seeded(42);
    const w = writer({
      write: sink.write,
      sampleRate: 0.1,
      sample: () => random(),
      queueSize: 1_000_000,
      flushMs: 60_000,
    });
    const n = 20_000;
    let queued = 0;
    for (let i = 0; i < n; i++) if (w.enqueue(record(2))) queued++;
    // Binomial(20 000, 0.1): sd ≈ 42; five sd either side.
    expect(queued).toBeGreaterThan(2_000 - 212);
    expect(queued).toBeLessThan(2_000 + 212);
    expect(w.stats).toMatchObject({ depth: queued * 2, sampledOut: n - queued, dropped: 0 });

    const sample = vi.fn(() => 0.99);
    const all = writer({ write: sink.write, sampleRate: 1, sample, flushMs: 60_000 });
    for (let i = 0; i < 100; i++) expect(all.enqueue(record())).toBe(true);
    expect(sample).not.toHaveBeenCalled();
    const none = writer({ write: sink.write, sampleRate: 0, flushMs: 60_000 });
    for (let i = 0; i < 100; i++) expect(none.enqueue(record())).toBe(false);
    expect(none.stats).toMatchObject({ depth: 0, sampledOut: 100 });
  });

  it('samples by a server-side draw: a caller can neither force nor avoid logging by the request id it sends', () => {
    const w = writer({ write: () => Promise.resolve(), sampleRate: 0.25, queueSize: 1_000_000, flushMs: 60_000 });
    const n = 40_000;
    // One caller-chosen id for every request (under a hash of the id, all or none would be logged), then fresh ids.
    let sameId = 0;
    for (let i = 0; i < n; i++) if (w.enqueue(record(1, { requestId: 'chosen-by-the-caller' }))) sameId++;
    let freshIds = 0;
    for (let i = 0; i < n; i++) if (w.enqueue(record(1))) freshIds++;
    // Binomial(40 000, 0.25): sd ≈ 87; five sd either side.
    expect(Math.abs(sameId - n / 4)).toBeLessThan(435);
    expect(Math.abs(freshIds - n / 4)).toBeLessThan(435);
  });

  it("logs a shadow's copy exactly when the answer it is compared with was logged", () => {
    const draws = [0.1, 0.9, 0.1, 0.9];
    const sample = vi.fn(() => draws.shift() ?? 0.5);
    const w = writer({ write: () => Promise.resolve(), sampleRate: 0.5, sample, flushMs: 60_000 });
    const logged = record(1);
    const skipped = record(1);
    expect(w.enqueue(logged)).toBe(true);
    expect(w.enqueue(skipped)).toBe(false);
    // The shadows' copies follow the answers' decisions, not new draws.
    expect(w.enqueue({ ...skipped, role: 'shadow' })).toBe(false);
    expect(w.enqueue({ ...logged, role: 'shadow' })).toBe(true);
    expect(sample).toHaveBeenCalledTimes(2);
    // The same id answered again gets a draw of its own, which its shadow then follows.
    expect(w.enqueue({ ...logged })).toBe(true);
    expect(w.enqueue({ ...logged })).toBe(false);
    expect(w.enqueue({ ...logged, role: 'shadow' })).toBe(false);
    // A shadow whose answer is no longer remembered draws.
    expect(w.enqueue(record(1, { role: 'shadow' }))).toBe(false);
    expect(sample).toHaveBeenCalledTimes(5);
  });

  it('logs a shadow result as rows of role shadow, with its own answers, error and latency', () => {
    const startedAt = new Date(1_700_000_000_123);
    const instances = [{ x: 1 }, { x: 2 }];
    expect(
      shadowLogRecord({
        deployment: 'delays',
        requestId: 'req-1',
        model: MODEL,
        instances,
        predictions: [{ prediction: 1 }, { prediction: null }],
        startedAt,
        latencyMs: 2.5,
      }),
    ).toEqual({
      requestId: 'req-1',
      loggedAt: startedAt.getTime(),
      deployment: 'delays',
      model: MODEL,
      role: 'shadow',
      instances,
      outputs: ['{"prediction":1}', '{"prediction":null}'],
      latencyMs: 2.5,
      error: undefined,
    });
    const failed = shadowLogRecord({
      deployment: 'delays',
      requestId: 'req-2',
      model: MODEL,
      instances,
      error: 'x: expected a number',
      startedAt,
      latencyMs: 0.1,
    });
    expect(failed).toMatchObject({ role: 'shadow', outputs: undefined, error: 'x: expected a number' });
  });

  it('keeps rows queued while writes fail, backs off, warns once per outage, and writes each row once', async () => {
    const metrics = new ServingMetrics({ defaultMetrics: false });
    const log = fakeLogger();
    let down = true;
    const sink = recordingSink(() =>
      down ? Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) : undefined,
    );
    const w = writer({
      write: sink.write,
      batchSize: 3,
      flushMs: 2,
      retryMinMs: 2,
      retryMaxMs: 20,
      metrics,
      logger: log.logger,
    });
    const records = Array.from({ length: 10 }, () => record());
    for (const r of records.slice(0, 5)) w.enqueue(r);
    await vi.waitFor(() => expect(sink.calls).toBeGreaterThanOrEqual(5));
    for (const r of records.slice(5)) w.enqueue(r);
    expect(w.stats.depth).toBe(10);
    expect(log.warn).toHaveBeenCalledTimes(1);
    const failures = sink.calls;
    // Backing off: far fewer attempts than one per 2 ms.
    await new Promise((r) => setTimeout(r, 100));
    expect(sink.calls - failures).toBeLessThan(15);

    down = false;
    await vi.waitFor(() => expect(w.stats.depth).toBe(0), { timeout: 2_000 });
    expect(sink.rows().map((r) => r.requestId)).toEqual(records.map((r) => r.requestId));
    expect(w.stats.written).toBe(10);
    expect(w.stats.writeErrors).toBe(await counter(metrics.logWriteErrors));
    expect(w.stats.writeErrors).toBeGreaterThan(0);
    expect(await counter(metrics.writtenLogs)).toBe(10);
    expect(log.warn).toHaveBeenCalledTimes(1);
    expect(log.info).toHaveBeenCalledWith(
      expect.objectContaining({ failedAttempts: expect.any(Number) as number }),
      'prediction logs: writing to Postgres again',
    );
    expect(
      (await metrics.logFlushDuration.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value,
    ).toBeGreaterThan(0);
  });

  it('isolates rows Postgres refuses and writes the rest of their batch', async () => {
    const metrics = new ServingMetrics({ defaultMetrics: false });
    const refused = Object.assign(new Error('unsupported Unicode escape sequence'), { code: '22P05' });
    const sink = recordingSink((batch) => (batch.some((r) => r.features.includes('bad')) ? refused : undefined));
    const w = writer({ write: sink.write, batchSize: 8, flushMs: 60_000, metrics, logger: fakeLogger().logger });
    const records = Array.from({ length: 8 }, (_, i) => record(1, i === 5 ? { instances: [{ bad: true }] } : {}));
    for (const r of records) w.enqueue(r);
    await vi.waitFor(() => expect(w.stats.depth).toBe(0));
    expect(sink.rows().map((r) => r.requestId)).toEqual(records.filter((_, i) => i !== 5).map((r) => r.requestId));
    expect(w.stats).toMatchObject({ written: 7, rejected: 1, dropped: 0 });
    expect(await counter(metrics.rejectedLogs)).toBe(1);
  });

  it('close writes what is queued, then refuses new rows as dropped', async () => {
    const sink = recordingSink();
    const w = writer({ write: sink.write, flushMs: 60_000, batchSize: 1_000 });
    for (let i = 0; i < 50; i++) w.enqueue(record(2));
    const stats = await w.close(1_000);
    expect(stats).toMatchObject({ depth: 0, written: 100, dropped: 0 });
    expect(w.enqueue(record())).toBe(false);
    expect(w.stats.dropped).toBe(1);
  });

  it('close ends the sink, bounded even when ending hangs', async () => {
    const onClose = vi.fn(() => new Promise<void>(() => {}));
    const w = new PredictionLogWriter({ write: () => Promise.resolve(), onClose });
    const started = performance.now();
    await w.close(10);
    expect(onClose).toHaveBeenCalledTimes(1);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('rejects impossible options', () => {
    expect(() => new PredictionLogWriter({ write: () => Promise.resolve(), maxBusyShare: 0 })).toThrow(/maxBusyShare/);
    expect(() => new PredictionLogWriter({ write: () => Promise.resolve(), sampleRate: 1.5 })).toThrow(RangeError);
    expect(() => new PredictionLogWriter({ write: () => Promise.resolve(), queueSize: 0 })).toThrow(RangeError);
  });

  it('tells refused rows (SQLSTATE 22, 23) from an unavailable server', () => {
    expect(isRejectedRowsError({ code: '22P05' })).toBe(true);
    expect(isRejectedRowsError({ code: '23514' })).toBe(true);
    expect(isRejectedRowsError({ code: '57014' })).toBe(false);
    expect(isRejectedRowsError({ code: 'ECONNREFUSED' })).toBe(false);
    expect(isRejectedRowsError(new Error('Connection terminated'))).toBe(false);
    expect(isRejectedRowsError(undefined)).toBe(false);
  });
});
