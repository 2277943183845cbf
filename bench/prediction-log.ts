/**
 * `npm run bench:prediction-log`: what one batch write of the prediction log costs, per row, for each sink: the wall
 * time, the CPU of the API process (serialising the rows and the driver) and the CPU of the Postgres backend that
 * writes them (read from /proc). Both sinks write the same rows, alternating within each round, into a fresh
 * embedded Postgres with the platform's migrations.
 */
import crypto from 'node:crypto';
import pg from 'pg';
import type { PredictionLogSink } from '../serving/prediction-log.js';
import { postgresPredictionLogSink } from '../serving/prediction-log-postgres.js';
import type { PredictionLogRow } from '../serving/prediction-log-records.js';
import { describeMachine, parseBenchArgs, processCpuSeconds, quantile, writeResultFile } from './harness.js';
import { startScratchPostgres } from './scratch-postgres.js';

const { runs, options } = parseBenchArgs({ runs: 5, options: { rows: '100000', batch: '1000' } });
const totalRows = Number(options.rows);
const batchSize = Number(options.batch);

/** Rows shaped like the serving bench's: the flights features, a binary classifier's answer. */
function makeRows(n: number): PredictionLogRow[] {
  const airports = ['PIT', 'SEA', 'ORD', 'ATL', 'DFW', 'LAX', 'SFO', 'JFK', 'BOS', 'DEN'];
  const versionId = crypto.randomUUID();
  const started = Date.now();
  const rows: PredictionLogRow[] = [];
  let seed = 7;
  const next = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 4294967296;
  };
  for (let i = 0; i < n; i++) {
    const p = next();
    rows.push({
      requestId: crypto.randomUUID(),
      loggedAt: started + i,
      deployment: 'flights-delay',
      model: 'flights-delay',
      versionId,
      version: 1,
      role: 'champion',
      features: JSON.stringify({
        hour: Math.floor(next() * 24),
        day_of_week: 1 + Math.floor(next() * 7),
        distance: Math.floor(next() * 2_500),
        origin: airports[Math.floor(next() * airports.length)]!,
        destination: airports[Math.floor(next() * airports.length)]!,
      }),
      outputs: JSON.stringify({ label: p > 0.5 ? 1 : 0, probabilities: [1 - p, p] }),
      latencyMs: Math.round(next() * 5_000) / 1_000,
      error: null,
    });
  }
  return rows;
}

/**
 * The writer's sink before COPY, kept here as the reference: one INSERT per batch whose rows travel as one JSON
 * document that `json_to_recordset` expands.
 */
function insertSink(pool: pg.Pool): PredictionLogSink {
  const text = `insert into prediction_logs
      (request_id, logged_at, deployment, model, version_id, version, role, features, outputs, latency_ms, error)
    select r."requestId", to_timestamp(r."loggedAt" / 1000.0), r.deployment, r.model, r."versionId", r.version, r.role,
      r.features, r.outputs, r."latencyMs", r.error
    from json_to_recordset($1::json) as r("requestId" text, "loggedAt" double precision, deployment text, model text,
      "versionId" uuid, version integer, role text, features json, outputs jsonb, "latencyMs" real, error text)`;
  const json = (value: string | null): string => JSON.stringify(value);
  return async (rows) => {
    const document = rows
      .map(
        (r) =>
          `{"requestId":${json(r.requestId)},"loggedAt":${r.loggedAt},"deployment":${json(r.deployment)},` +
          `"model":${json(r.model)},"versionId":${json(r.versionId)},"version":${r.version},"role":${json(r.role)},` +
          `"features":${r.features},"outputs":${r.outputs ?? 'null'},"latencyMs":${r.latencyMs},"error":${json(r.error)}}`,
      )
      .join(',');
    await pool.query({ name: 'bench-prediction-log-insert', text, values: [`[${document}]`] });
  };
}

interface Sample {
  readonly wallMs: number;
  readonly nodeCpuUsPerRow: number;
  readonly postgresCpuUsPerRow: number;
}

async function measure(pool: pg.Pool, sink: PredictionLogSink, rows: readonly PredictionLogRow[]): Promise<Sample> {
  await pool.query('truncate prediction_logs');
  const pid = (await pool.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  const pgBefore = processCpuSeconds(pid);
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  for (let offset = 0; offset < rows.length; offset += batchSize) {
    await sink(rows.slice(offset, offset + batchSize));
  }
  const wallMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const pgCpu = (processCpuSeconds(pid) - pgBefore) * 1e6;
  const count = Number((await pool.query<{ n: string }>('select count(*) as n from prediction_logs')).rows[0]!.n);
  if (count !== rows.length) throw new Error(`expected ${rows.length} rows written, found ${count}`);
  return {
    wallMs,
    nodeCpuUsPerRow: (cpu.user + cpu.system) / rows.length,
    postgresCpuUsPerRow: pgCpu / rows.length,
  };
}

/** What each sink stored for the same rows, as Postgres renders it: must be identical. */
async function storedText(pool: pg.Pool, sink: PredictionLogSink, rows: readonly PredictionLogRow[]): Promise<string> {
  await pool.query('truncate prediction_logs');
  await sink(rows);
  const result = await pool.query<{ row: string }>(
    `select concat_ws('|', request_id, logged_at, deployment, model, version_id, version, role, features::text,
       outputs::text, latency_ms, error) as row from prediction_logs order by id`,
  );
  return result.rows.map((r) => r.row).join('\n');
}

async function main(): Promise<void> {
  const scratch = await startScratchPostgres('prediction-log');
  try {
    const pool = new pg.Pool({ connectionString: scratch.url, max: 1 });
    const sinks: Record<string, PredictionLogSink> = {
      'INSERT ... json_to_recordset': insertSink(pool),
      'COPY ... FROM STDIN (text)': postgresPredictionLogSink(pool),
    };
    const rows = makeRows(totalRows);
    const tricky: PredictionLogRow[] = rows.slice(0, 3).map((row, i) => ({
      ...row,
      requestId: `req\t${i}\\`,
      features: JSON.stringify({ ...(JSON.parse(row.features) as object), origin: 'a\\b"c\nd\te' }),
      error: i === 1 ? 'line one\nline two\ttabbed \\ backslash' : null,
      outputs: i === 2 ? null : row.outputs,
      deployment: i === 0 ? null : row.deployment,
    }));
    const sample = [...tricky, ...rows.slice(3, 1_000)];
    const stored: string[] = [];
    for (const sink of Object.values(sinks)) stored.push(await storedText(pool, sink, sample));
    if (new Set(stored).size !== 1) throw new Error('the sinks stored different rows');

    const samples: Record<string, Sample[]> = Object.fromEntries(Object.keys(sinks).map((name) => [name, []]));
    for (let round = 0; round <= runs; round++) {
      for (const [name, sink] of Object.entries(sinks)) {
        const sample = await measure(pool, sink, rows);
        // Round 0 warms the server's caches and the JIT.
        if (round > 0) samples[name]!.push(sample);
        console.error(
          `round ${round}${round === 0 ? ' (warm-up)' : ''} ${name}: ${sample.wallMs.toFixed(0)} ms, ` +
            `node ${sample.nodeCpuUsPerRow.toFixed(2)} µs/row, postgres ${sample.postgresCpuUsPerRow.toFixed(2)} µs/row`,
        );
      }
    }
    await pool.end();

    const median = (values: number[]): number =>
      quantile(
        [...values].sort((a, b) => a - b),
        0.5,
      );
    const summary = Object.entries(samples).map(([sink, list]) => {
      const wallMs = median(list.map((s) => s.wallMs));
      return {
        sink,
        wallMs,
        rowsPerSecond: Math.round(totalRows / (wallMs / 1000)),
        nodeCpuUsPerRow: median(list.map((s) => s.nodeCpuUsPerRow)),
        postgresCpuUsPerRow: median(list.map((s) => s.postgresCpuUsPerRow)),
      };
    });
    console.log(
      `${totalRows} rows in batches of ${batchSize}, median of ${runs} rounds (${describeMachine().cpuModel})`,
    );
    console.log('| Sink | Wall ms | Rows/s | API CPU µs/row | Postgres CPU µs/row |');
    console.log('| --- | ---: | ---: | ---: | ---: |');
    for (const s of summary) {
      console.log(
        `| ${s.sink} | ${s.wallMs.toFixed(0)} | ${s.rowsPerSecond.toLocaleString('en-US')} | ` +
          `${s.nodeCpuUsPerRow.toFixed(2)} | ${s.postgresCpuUsPerRow.toFixed(2)} |`,
      );
    }
    console.log(`results: ${writeResultFile('prediction-log', { totalRows, batchSize, runs, summary, samples })}`);
  } finally {
    await scratch.stop();
  }
}

await main();
