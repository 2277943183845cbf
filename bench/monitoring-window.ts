/**
 * `npm run bench:monitoring`: one monitoring window over 1,000,000 logged predictions with 5 features (3 numeric, 2
 * categorical), our computation against pandas + SciPy (bench/monitoring_reference.py, Debian's python3-pandas and
 * python3-scipy) over the same bins, in the same run, alternating within each round.
 *
 * Ours, timed: the window's rows streamed out of Postgres (COPY, monitoring/window-scan.ts) and counted onto the
 * baseline's bins, then skew and drift per feature and for the predictions (window-analysis.ts) and the estimated
 * performance (CBPE over the 1,000,000 probabilities): what `computeMonitoringWindow` does between resolving the
 * deployment and writing the report. The reference, timed: pandas reading the same rows as CSV (written untimed by
 * this script, reported apart), binning them with `pd.cut` on the same edges, `value_counts` for the categories,
 * `scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2`, L-infinity and PSI. Every distance must agree to 1e-9
 * and every count exactly. Also timed once per round for the record: the counts aggregated in SQL instead
 * (width_bucket per numeric feature, GROUPING SETS), the alternative the COPY stream was chosen over.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { ColumnStatistics } from '../data/types.js';
import { baselineEdges } from '../monitoring/distances.js';
import { estimateBinaryPerformance } from '../monitoring/performance-estimate.js';
import { analyzeFeature, type ReportFeature } from '../monitoring/window-analysis.js';
import { scanWindow, type ScanPlan, type WindowQuery, type WindowScan } from '../monitoring/window-scan.js';
import {
  check,
  describeMachine,
  loadAverage,
  parseBenchArgs,
  processCpuSeconds,
  quantile,
  writeResultFile,
} from './harness.js';
import { startScratchPostgres } from './scratch-postgres.js';

const { runs, options } = parseBenchArgs({ runs: 5, options: { rows: '1000000', python: '/usr/bin/python3' } });
const totalRows = Number(options.rows);
const REFERENCE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'monitoring_reference.py');
const NUMERIC = ['distance', 'dep_delay', 'hour'] as const;
const CATEGORICAL = ['origin', 'carrier'] as const;
const VERSION_ID = '00000000-0000-4000-8000-000000000001';
const WINDOW_END = new Date('2026-06-01T01:00:00Z');
const WINDOW: WindowQuery = {
  deployment: 'flights',
  versionId: VERSION_ID,
  start: new Date(WINDOW_END.getTime() - 3_600_000),
  end: WINDOW_END,
};
const PREVIOUS: WindowQuery = { ...WINDOW, start: new Date(WINDOW.start.getTime() - 3_600_000), end: WINDOW.start };

/**
 * Rows of one window, generated in SQL from `setseed`: `shift` moves distance and the origin mix (the previous
 * window has none, the measured one some), ~1 % of dep_delay missing, a few origins the baseline never had.
 */
function insertSql(rows: number, window: WindowQuery, shift: number): string {
  const span = window.end.getTime() - window.start.getTime();
  return `insert into prediction_logs
      (request_id, logged_at, deployment, model, version_id, version, role, features, outputs, latency_ms)
    select 'r' || ${shift} || '-' || i,
      to_timestamp(${window.start.getTime() / 1000} + (i % ${span}) / 1000.0), 'flights', 'flights',
      '${VERSION_ID}', 1, 'champion',
      json_build_object(
        'distance', round((random() * 2000 + ${shift} * random() * 800)::numeric, 2),
        'dep_delay', case when random() < 0.01 then null else round((random() * 90 - 15)::numeric, 1) end,
        'hour', floor(random() * 24)::int,
        'origin', (array['PIT','SEA','ORD','ATL','DFW','LAX','SFO','JFK','BOS','DEN','XNA','AVP'])
          [1 + floor(random() * (10 + 2 * ${shift}))::int],
        'carrier', (array['AA','UA','DL','WN','B6'])[1 + floor(random() * 5)::int]),
      jsonb_build_object('label', case when p >= 0.5 then 1 else 0 end, 'probabilities', jsonb_build_array(1 - p, p)),
      1
    from (select i, round(random()::numeric, 6)::float8 as p from generate_series(1, ${rows}) i) s`;
}

/** Training statistics shaped like StatisticsGen's, from a seeded sample. */
function baseline(): Map<string, ColumnStatistics> {
  let seed = 42;
  const next = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 4294967296;
  };
  const n = 100_000;
  const numeric = (name: string, draw: () => number): ColumnStatistics => {
    const values = Float64Array.from({ length: n }, draw).sort();
    const min = values[0]!;
    const max = values[n - 1]!;
    const bins = 40;
    const edges = Array.from({ length: bins + 1 }, (_, i) => min + ((max - min) * i) / bins);
    const counts = new Array<number>(bins).fill(0);
    for (const v of values) counts[Math.min(bins - 1, Math.floor(((v - min) / (max - min)) * bins))]!++;
    const q = (p: number) => quantile(values, p);
    return {
      name,
      type: 'DOUBLE',
      kind: 'numeric',
      count: n,
      missing: 0,
      numeric: {
        min,
        max,
        mean: 0,
        std: 0,
        zeros: 0,
        quantiles: [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99].map((p) => ({ q: p, value: q(p) })),
        histogram: { edges, counts },
      },
    };
  };
  const categorical = (name: string, values: readonly string[]): ColumnStatistics => {
    const frequencies = values.map((value, i) => ({ value, count: 1000 * (values.length - i) }));
    return {
      name,
      type: 'VARCHAR',
      kind: 'categorical',
      count: frequencies.reduce((s, f) => s + f.count, 0),
      missing: 0,
      categorical: { unique: values.length, topK: frequencies.slice(0, 10), frequencies },
    };
  };
  return new Map([
    ['distance', numeric('distance', () => Math.round(next() * 200_000) / 100)],
    ['dep_delay', numeric('dep_delay', () => Math.round((next() * 80 - 12) * 10) / 10)],
    ['hour', numeric('hour', () => Math.floor(next() * 24))],
    ['origin', categorical('origin', ['PIT', 'SEA', 'ORD', 'ATL', 'DFW', 'LAX', 'SFO', 'JFK', 'BOS', 'DEN'])],
    ['carrier', categorical('carrier', ['AA', 'UA', 'DL', 'WN', 'B6'])],
  ]);
}

function scanPlan(columns: Map<string, ColumnStatistics>): ScanPlan {
  return {
    features: [
      ...NUMERIC.map((name) => ({ name, kind: 'numeric' as const, edges: baselineEdges(columns.get(name)!)! })),
      ...CATEGORICAL.map((name) => ({ name, kind: 'categorical' as const })),
    ],
    task: 'binary',
    keepProbabilities: true,
  };
}

function analyze(scan: WindowScan, columns: Map<string, ColumnStatistics>, previous?: Map<string, ReportFeature>) {
  return scan.features.map((f) =>
    analyzeFeature({
      feature: f.plan.name,
      kind: f.plan.kind,
      ...(f.numeric ? { numeric: f.numeric } : {}),
      ...(f.categorical ? { categorical: f.categorical } : {}),
      rows: scan.rows,
      baseline: columns.get(f.plan.name)!,
      ...(previous?.get(f.plan.name) ? { previous: previous.get(f.plan.name)! } : {}),
      thresholds: { skew: 0.1, drift: 0.1 },
      quiet: false,
    }),
  );
}

/** The measured computation: stream, count, compare, estimate. */
async function ours(
  pool: pg.Pool,
  backend: number,
  columns: Map<string, ColumnStatistics>,
  previous: Map<string, ReportFeature>,
) {
  const cpuBefore = process.cpuUsage();
  const backendBefore = processCpuSeconds(backend);
  const started = performance.now();
  const scan = await scanWindow(pool, WINDOW, scanPlan(columns));
  const scanned = performance.now();
  const analyzed = analyze(scan, columns, previous);
  const estimated = estimateBinaryPerformance(scan.probabilities.view(), 0.5);
  const finished = performance.now();
  const cpu = process.cpuUsage(cpuBefore);
  return {
    totalMs: finished - started,
    scanMs: scanned - started,
    analyzeMs: finished - scanned,
    nodeCpuMs: (cpu.user + cpu.system) / 1000,
    postgresCpuMs: (processCpuSeconds(backend) - backendBefore) * 1000,
    scan,
    analyzed,
    estimated,
  };
}

/** The alternative: the same counts aggregated by Postgres (one GROUPING SETS query). */
async function sqlAggregation(pool: pg.Pool, plan: ScanPlan): Promise<number> {
  const bucket = (name: string, edges: readonly number[]) =>
    `case when (f->>'${name}') is null then -1 when (f->>'${name}')::float8 = ${edges[edges.length - 1]} then ${edges.length - 1}
      else width_bucket((f->>'${name}')::float8, array[${edges.join(',')}]::float8[]) end as ${name}`;
  const numeric = plan.features.filter((f) => f.kind === 'numeric');
  const sql = `select ${[...NUMERIC, ...CATEGORICAL].join(', ')}, count(*) as n from (
      select ${numeric.map((f) => bucket(f.name, f.kind === 'numeric' ? f.edges! : [])).join(', ')},
        ${CATEGORICAL.map((c) => `f->>'${c}' as ${c}`).join(', ')}
      from (select features::jsonb as f from prediction_logs where deployment = $1 and version_id = $2
              and role = 'champion' and error is null and logged_at >= $3 and logged_at < $4 offset 0) rows) s
    group by grouping sets (${[...NUMERIC, ...CATEGORICAL].map((c) => `(${c})`).join(', ')})`;
  const started = performance.now();
  await pool.query(sql, [WINDOW.deployment, WINDOW.versionId, WINDOW.start, WINDOW.end]);
  return performance.now() - started;
}

/** The window's rows as the reference reads them: one CSV column per feature (empty when missing), then P(1). */
async function exportCsv(pool: pg.Pool, file: string): Promise<void> {
  const client = await pool.connect();
  try {
    const stream = client.query(
      copyTo(`copy (select ${[...NUMERIC, ...CATEGORICAL].map((c) => `features->>'${c}' as ${c}`).join(', ')},
        (outputs->'probabilities'->>1)::float8 as p
        from prediction_logs where deployment = 'flights' and logged_at >= '${WINDOW.start.toISOString()}'
          and logged_at < '${WINDOW.end.toISOString()}') to stdout with (format csv, header true)`),
    );
    await new Promise<void>((resolve, reject) => {
      const out = fs.createWriteStream(file);
      stream.on('error', reject);
      out.on('error', reject);
      out.on('finish', resolve);
      stream.pipe(out);
    });
  } finally {
    client.release();
  }
}

interface ReferenceResult {
  readonly load_s: number;
  readonly compute_s: number;
  readonly compute_cpu_s: number;
  readonly features: Record<string, { counts: Record<string, number> | number[]; skew: Distances; drift: Distances }>;
  readonly versions: Record<string, string>;
}
interface Distances {
  readonly distance: number;
  readonly psi: number;
}

function reference(spec: string, csv: string, out: string): ReferenceResult {
  execFileSync(options.python, [REFERENCE, '--spec', spec, '--csv', csv, '--out', out], { stdio: 'inherit' });
  return JSON.parse(fs.readFileSync(out, 'utf8')) as ReferenceResult;
}

/** Largest difference between our distances and the reference's, after checking every count is equal. */
function compare(analyzed: ReturnType<typeof analyze>, result: ReferenceResult): number {
  let worst = 0;
  for (const { report } of analyzed) {
    const theirs = result.features[report.feature];
    check(theirs !== undefined, `the reference has no ${report.feature}`);
    const ourCounts = report.counts ?? report.categories;
    const sameCounts = Array.isArray(theirs.counts)
      ? JSON.stringify(theirs.counts) === JSON.stringify(ourCounts)
      : JSON.stringify(Object.entries(theirs.counts).sort()) === JSON.stringify(Object.entries(ourCounts!).sort());
    check(
      sameCounts,
      `${report.feature}: counts differ: ${JSON.stringify(ourCounts)} vs ${JSON.stringify(theirs.counts)}`,
    );
    for (const kind of ['skew', 'drift'] as const) {
      const mine = report[kind];
      check(mine !== undefined, `${report.feature}: no ${kind}`);
      worst = Math.max(worst, Math.abs(mine.distance - theirs[kind].distance), Math.abs(mine.psi - theirs[kind].psi));
    }
  }
  return worst;
}

async function main(): Promise<void> {
  const scratch = await startScratchPostgres('monitoring');
  const { dir } = scratch;
  try {
    // One connection, so the backend whose CPU time is read is the one that serves every query.
    const pool = new pg.Pool({ connectionString: scratch.url, max: 1 });
    const backend = (await pool.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    console.error(`inserting ${totalRows} rows (and ${Math.round(totalRows / 10)} for the previous window)...`);
    await pool.query('select setseed(0.42)');
    await pool.query(insertSql(Math.round(totalRows / 10), PREVIOUS, 0));
    await pool.query(insertSql(totalRows, WINDOW, 1));
    await pool.query('vacuum analyze prediction_logs');

    const columns = baseline();
    const plan = scanPlan(columns);
    const previousScan = await scanWindow(pool, PREVIOUS, plan);
    const previous = new Map(analyze(previousScan, columns).map((a) => [a.report.feature, a.report]));

    const csv = path.join(dir, 'window.csv');
    const spec = path.join(dir, 'spec.json');
    await exportCsv(pool, csv);
    fs.writeFileSync(
      spec,
      JSON.stringify({
        numeric: Object.fromEntries(
          NUMERIC.map((name) => {
            const report = previous.get(name)!;
            return [name, { edges: report.edges, baseline: report.baselineCounts, previous: report.counts }];
          }),
        ),
        categorical: Object.fromEntries(
          CATEGORICAL.map((name) => [
            name,
            {
              baseline: Object.fromEntries(
                (columns.get(name)!.categorical!.frequencies ?? []).map((f) => [f.value, f.count]),
              ),
              previous: previous.get(name)!.categories,
            },
          ]),
        ),
      }),
    );

    const samples = {
      ours: [] as number[],
      scan: [] as number[],
      analyze: [] as number[],
      nodeCpu: [] as number[],
      postgresCpu: [] as number[],
      pandasCpu: [] as number[],
      load: [] as number[],
      pandas: [] as number[],
      sql: [] as number[],
    };
    let worst = 0;
    let last: Awaited<ReturnType<typeof ours>> | undefined;
    let versions: Record<string, string> = {};
    for (let round = 0; round <= runs; round++) {
      const mine = await ours(pool, backend, columns, previous);
      const theirs = reference(spec, csv, path.join(dir, `reference-${round}.json`));
      const sqlMs = await sqlAggregation(pool, plan);
      check(mine.scan.rows === totalRows, `expected ${totalRows} rows, scanned ${mine.scan.rows}`);
      worst = Math.max(worst, compare(mine.analyzed, theirs));
      versions = theirs.versions;
      last = mine;
      console.error(
        `round ${round}${round === 0 ? ' (warm-up)' : ''}: ours ${mine.totalMs.toFixed(0)} ms ` +
          `(scan ${mine.scanMs.toFixed(0)}, distances + estimate ${mine.analyzeMs.toFixed(0)}; CPU node ` +
          `${mine.nodeCpuMs.toFixed(0)}, postgres ${mine.postgresCpuMs.toFixed(0)}); pandas+SciPy ` +
          `${(theirs.compute_s * 1000).toFixed(0)} ms (+ CSV load ${(theirs.load_s * 1000).toFixed(0)}); SQL ` +
          `aggregation ${sqlMs.toFixed(0)} ms; load ${loadAverage().join(' ')}`,
      );
      if (round === 0) continue;
      samples.ours.push(mine.totalMs);
      samples.scan.push(mine.scanMs);
      samples.analyze.push(mine.analyzeMs);
      samples.nodeCpu.push(mine.nodeCpuMs);
      samples.postgresCpu.push(mine.postgresCpuMs);
      samples.pandas.push(theirs.compute_s * 1000);
      samples.pandasCpu.push(theirs.compute_cpu_s * 1000);
      samples.load.push(theirs.load_s * 1000);
      samples.sql.push(sqlMs);
    }
    await pool.end();
    check(worst <= 1e-9, `distances differ from the reference by ${worst}`);
    const median = (values: number[]) =>
      quantile(
        [...values].sort((a, b) => a - b),
        0.5,
      );
    const m = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)])) as Record<
      keyof typeof samples,
      number
    >;
    console.log(
      `${totalRows.toLocaleString('en-US')} logged predictions, 5 features (3 numeric, 2 categorical), median of ${runs} rounds; ` +
        `${describeMachine().cpus} × ${describeMachine().cpuModel}; largest difference from SciPy ${worst.toExponential(2)}`,
    );
    console.log('| Computation | Median wall ms | Median CPU ms |');
    console.log('| --- | ---: | ---: |');
    const row = (what: string, wall: number, cpu = '') => console.log(`| ${what} | ${wall.toFixed(0)} | ${cpu} |`);
    row(
      'Ours: COPY stream + counts + skew/drift/PSI + CBPE (total)',
      m.ours,
      `${m.nodeCpu.toFixed(0)} node + ${m.postgresCpu.toFixed(0)} postgres`,
    );
    row('— of which reading and counting the rows', m.scan);
    row('— of which 10 distances + the estimate over every probability', m.analyze);
    row(
      'pandas + SciPy: pd.cut, value_counts, jensenshannon, L-inf, PSI (rows in memory)',
      m.pandas,
      m.pandasCpu.toFixed(0),
    );
    row('pandas: reading the same rows from CSV (not in the line above)', m.load);
    row('Postgres: the counts alone by SQL aggregation (GROUPING SETS)', m.sql);
    console.log(
      `estimate: ${Object.entries(last?.estimated ?? {})
        .map(([k, v]) => `${k} ${v.toFixed(4)}`)
        .join(
          ', ',
        )}; skew: ${last?.analyzed.map((a) => `${a.report.feature} ${a.report.skew?.distance.toFixed(4)}`).join(', ')}`,
    );
    console.log(
      `results: ${writeResultFile('monitoring-window', { totalRows, runs, medians: m, samples, worstDifference: worst, versions })}`,
    );
  } finally {
    await scratch.stop();
  }
}

await main();
