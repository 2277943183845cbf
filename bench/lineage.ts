/**
 * `npm run bench:lineage`: the two lineage questions over HTTP (`GET /v1/lineage`, in process: validation, the walk
 * in Postgres, the JSON) on a store of 100,000 executions and 300,000 artifacts, in a fresh embedded Postgres with
 * the platform's migrations:
 *
 * - "what produced the version serving now": upstream of a deployment (its champion), and of that model version;
 * - "which runs and models used this snapshot": downstream of a dataset snapshot artifact.
 *
 * The store is seeded in SQL (INSERT ... SELECT generate_series, a few seconds) in the shape our pipelines record:
 * 1,250 pipelines of 10 runs each; a run is 8 executions (extract, statistics, validate_data, prepare, train,
 * evaluate, validate_model, register) and 24 artifacts, 41 events, a model version and a champion revision of the
 * pipeline's deployment. As in real runs, each snapshot is read by two runs (a rerun on unchanged data finds it by
 * fingerprint), and a pipeline's schema artifact is written by the validate_data of each of its runs (the schema in
 * force is content-addressed), which ties a pipeline's runs together. Each iteration asks about another pipeline.
 */
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { createLogger } from '../core/logger.js';
import { authentication } from '../server/auth.js';
import { createErrorHandler } from '../server/error-handler.js';
import { createRouter } from '../server/router.js';
import { lineage } from '../server/routes/lineage.js';
import type { LineageGraphJson } from '../server/routes/lineage-responses.js';
import { createDatabase } from '../storage/database.js';
import { DrizzleLineageStore } from '../storage/lineage-store.js';
import {
  check,
  describeMachine,
  formatTable,
  loadAverage,
  parseBenchArgs,
  summarize,
  writeResultFile,
} from './harness.js';
import { startScratchPostgres } from './scratch-postgres.js';

const { runs, warmup, options } = parseBenchArgs({
  runs: 30,
  warmup: 5,
  options: { executions: '100000', pipelines: '1250', goal: '100' },
});
const EXECUTIONS_PER_RUN = 8;
const ARTIFACTS_PER_RUN = 24;
const RUN_COUNT = Math.floor(Number(options.executions) / EXECUTIONS_PER_RUN);
const PIPELINES = Number(options.pipelines);
const GOAL_MS = Number(options.goal);

const STAGES = ['extract', 'statistics', 'validate_data', 'prepare', 'train', 'evaluate', 'validate_model', 'register'];
const EXECUTION_TYPES = [
  'ExampleGen',
  'StatisticsGen',
  'ExampleValidator',
  'Transform',
  'Trainer',
  'Evaluator',
  'ModelValidator',
  'ModelRegistry',
];
/** What each of a run's 24 artifact slots is: 11 that flow on, then 8 training checkpoints and 5 slice reports. */
const SLOTS = [
  ['Dataset', 'snapshot.parquet'],
  ['Statistics', 'statistics.json'],
  ['Schema', 'schema.json'],
  ['Anomalies', 'validation-report.json'],
  ['Report', 'validation-report.md'],
  ['Dataset', 'train.parquet'],
  ['Dataset', 'eval.parquet'],
  ['Transform', 'transform.json'],
  ['Model', 'model.onnx'],
  ['Evaluation', 'evaluation.json'],
  ['Report', 'blessing.json'],
  ...Array.from({ length: 8 }, (_, i) => ['Checkpoint', `checkpoint-${i}`]),
  ...Array.from({ length: 5 }, (_, i) => ['Report', `slice-${i}.json`]),
] as const;
/** (stage, slot, event type, role): the events of one run, as the stage activities record them. */
const EVENTS: readonly (readonly [number, number, 'input' | 'output', string])[] = [
  [0, 0, 'output', 'examples'],
  [1, 0, 'input', 'examples'],
  [1, 1, 'output', 'statistics'],
  [2, 0, 'input', 'examples'],
  [2, 1, 'input', 'statistics'],
  [2, 2, 'output', 'schema'],
  [2, 3, 'output', 'anomalies'],
  [2, 4, 'output', 'report'],
  [3, 0, 'input', 'examples'],
  [3, 5, 'output', 'train'],
  [3, 6, 'output', 'eval'],
  [3, 7, 'output', 'transform'],
  [4, 5, 'input', 'examples'],
  [4, 7, 'input', 'transform'],
  [4, 8, 'output', 'model'],
  ...Array.from({ length: 8 }, (_, i) => [4, 11 + i, 'output', `checkpoint-${i}`] as const),
  [5, 8, 'input', 'model'],
  [5, 6, 'input', 'examples'],
  [5, 9, 'output', 'evaluation'],
  ...Array.from({ length: 5 }, (_, i) => [5, 19 + i, 'output', `slice-${i}`] as const),
  [6, 8, 'input', 'model'],
  [6, 10, 'output', 'blessing'],
  [7, 0, 'input', 'examples'],
  [7, 1, 'input', 'statistics'],
  [7, 2, 'input', 'schema'],
  [7, 7, 'input', 'transform'],
  [7, 9, 'input', 'evaluation'],
  [7, 10, 'input', 'blessing'],
  [7, 8, 'output', 'model'],
];

const sqlArray = (values: readonly string[]) => `array[${values.map((v) => `'${v}'`).join(',')}]`;

/** A deterministic, well-spread UUID per (kind, number), so ids are as random in the indexes as real ones. */
const id = (kind: string, n: string) => `md5('${kind}' || ${n})::uuid`;

/**
 * The run that owns slot `slot` of run `k`'s artifacts: the snapshot of every other run is its predecessor's in the
 * pipeline (found by fingerprint), the schema is the pipeline's first run's; everything else is the run's own.
 */
const owner = (k: string, slot: string) =>
  `case when ${slot} = 0 and (${k} / ${PIPELINES}) % 2 = 1 then ${k} - ${PIPELINES}
        when ${slot} = 2 then ${k} % ${PIPELINES} else ${k} end`;

const SEEDED_TABLES = [
  'pipelines',
  'pipeline_versions',
  'registered_models',
  'deployments',
  'pipeline_runs',
  'executions',
  'artifacts',
  'events',
  'model_versions',
  'deployment_revisions',
];

/**
 * Runs `load` with the tables' keys, indexes and foreign keys dropped, then puts them back as the migrations made
 * them: a sorted index build after the load instead of 2.5 million random inserts into B-trees (ids are random
 * UUIDs, as in the platform), which is most of the seed's time. The foreign keys come back `not valid`, since the
 * rows are consistent by construction and checking 500,000 events would take longer than loading them.
 */
async function withoutIndexes(client: pg.PoolClient, tables: readonly string[], load: () => Promise<void>) {
  const { rows: constraints } = await client.query<{ tbl: string; name: string; type: string; def: string }>(
    `select conrelid::regclass::text as tbl, conname as name, contype as type, pg_get_constraintdef(oid) as def
     from pg_constraint
     where contype in ('p', 'u', 'f')
       and (conrelid = any($1::regclass[]) or (contype = 'f' and confrelid = any($1::regclass[])))`,
    [tables],
  );
  const { rows: indexes } = await client.query<{ name: string; def: string }>(
    `select i.indexname as name, i.indexdef as def from pg_indexes i
     where i.schemaname = 'public' and i.tablename = any($1::text[])
       and not exists (select 1 from pg_constraint c where c.conindid = format('%I', i.indexname)::regclass)`,
    [tables],
  );
  const foreign = constraints.filter((c) => c.type === 'f');
  const keys = constraints.filter((c) => c.type !== 'f');
  for (const c of [...foreign, ...keys]) await client.query(`alter table ${c.tbl} drop constraint "${c.name}"`);
  for (const index of indexes) await client.query(`drop index "${index.name}"`);
  await client.query(`set maintenance_work_mem = '256MB'`);
  await load();
  for (const c of keys) await client.query(`alter table ${c.tbl} add constraint "${c.name}" ${c.def}`);
  for (const index of indexes) await client.query(index.def);
  for (const c of foreign) await client.query(`alter table ${c.tbl} add constraint "${c.name}" ${c.def} not valid`);
}

async function seed(pool: pg.Pool): Promise<Record<string, number>> {
  const R = RUN_COUNT;
  const P = PIPELINES;
  const t0 = `timestamptz '2026-01-01T00:00:00Z'`;
  const statements = [
    `insert into pipelines (id, name) select ${id('p', 'p')}, 'pipeline-' || p from generate_series(0, ${P - 1}) p`,
    `insert into pipeline_versions (id, pipeline_id, version, definition, definition_sha256, created_by)
     select ${id('pv', 'p')}, ${id('p', 'p')}, 1, '{}', md5('pv' || p), 'bench' from generate_series(0, ${P - 1}) p`,
    `insert into registered_models (id, name) select ${id('m', 'p')}, 'pipeline-' || p from generate_series(0, ${P - 1}) p`,
    `insert into deployments (id, name, model_id)
     select ${id('d', 'p')}, 'pipeline-' || p, ${id('m', 'p')} from generate_series(0, ${P - 1}) p`,
    `insert into pipeline_runs (id, pipeline_version_id, workflow_id, trigger, status, outcome, started_at, finished_at)
     select ${id('r', 'k')}, ${id('pv', `k % ${P}`)}, 'wf-' || k, 'schedule', 'succeeded', 'deployed',
       ${t0} + k * interval '1 minute', ${t0} + k * interval '1 minute' + interval '30 seconds'
     from generate_series(0, ${R - 1}) k`,
    `insert into executions (id, type, name, external_id, workflow_id, stage, state, started_at, finished_at)
     select ${id('x', `k * ${EXECUTIONS_PER_RUN} + j`)}, (${sqlArray(EXECUTION_TYPES)})[j + 1],
       (${sqlArray(STAGES)})[j + 1], 'wf-' || k || '/' || (${sqlArray(STAGES)})[j + 1], 'wf-' || k,
       (${sqlArray(STAGES)})[j + 1], 'complete', ${t0} + k * interval '1 minute' + j * interval '2 seconds',
       ${t0} + k * interval '1 minute' + (j + 1) * interval '2 seconds'
     from generate_series(0, ${R - 1}) k, generate_series(0, ${EXECUTIONS_PER_RUN - 1}) j`,
    `insert into artifacts (id, type, uri, sha256, bytes, properties, created_at)
     select ${id('a', 'n')}, (${sqlArray(SLOTS.map((s) => s[0]))})[n % ${ARTIFACTS_PER_RUN} + 1],
       's3://bench/artifacts/sha256/' || encode(sha256(n::text::bytea), 'hex'), encode(sha256(n::text::bytea), 'hex'),
       1000 + n % 1000, jsonb_build_object('kind', (${sqlArray(SLOTS.map((s) => s[1]))})[n % ${ARTIFACTS_PER_RUN} + 1]),
       ${t0} + (n / ${ARTIFACTS_PER_RUN}) * interval '1 minute'
     from generate_series(0, ${R * ARTIFACTS_PER_RUN - 1}) n`,
    `insert into events (artifact_id, execution_id, type, role, created_at)
     select ${id('a', `(${owner('k', 'e.slot')}) * ${ARTIFACTS_PER_RUN} + e.slot`)},
       ${id('x', `k * ${EXECUTIONS_PER_RUN} + e.stage`)}, e.type, e.role, ${t0} + k * interval '1 minute'
     from generate_series(0, ${R - 1}) k,
       (values ${EVENTS.map(([stage, slot, type, role]) => `(${stage}, ${slot}, '${type}', '${role}')`).join(', ')})
         as e(stage, slot, type, role)`,
    `insert into model_versions (id, model_id, version, artifact_id, onnx_uri, sha256, signature, status, source_run_id,
       created_at)
     select ${id('v', 'k')}, ${id('m', `k % ${P}`)}, k / ${P} + 1, a.id, a.uri, a.sha256, '{"inputs":[],"outputs":[]}',
       'blessed', ${id('r', 'k')}, ${t0} + k * interval '1 minute' + interval '30 seconds'
     from generate_series(0, ${R - 1}) k join artifacts a on a.id = ${id('a', `k * ${ARTIFACTS_PER_RUN} + 8`)}`,
    // Each version was the champion until its pipeline's next run replaced it; the last run's serves now.
    `insert into deployment_revisions (deployment_id, version_id, role, traffic_percent, reason, actor, started_at,
       ended_at)
     select ${id('d', `k % ${P}`)}, ${id('v', 'k')}, 'champion', 100, 'bench', 'bench',
       ${t0} + k * interval '1 minute' + interval '30 seconds',
       case when k + ${P} < ${R} then ${t0} + (k + ${P}) * interval '1 minute' + interval '30 seconds' end
     from generate_series(0, ${R - 1}) k`,
  ];
  const client = await pool.connect();
  try {
    await withoutIndexes(client, SEEDED_TABLES, async () => {
      for (const statement of statements) await client.query(statement);
    });
    await client.query('vacuum analyze');
  } finally {
    client.release();
  }
  const { rows } = await pool.query<Record<string, string>>(
    `select (select count(*) from executions) as executions, (select count(*) from artifacts) as artifacts,
       (select count(*) from events) as events, (select count(*) from pipeline_runs) as runs,
       (select count(*) from model_versions) as model_versions,
       (select count(*) from deployment_revisions) as deployment_revisions`,
  );
  return Object.fromEntries(Object.entries(rows[0]!).map(([k, v]) => [k, Number(v)]));
}

/** The lineage route alone, open (no keys), with the app's validation and error handling. */
function lineageApp(store: DrizzleLineageStore) {
  const app = createRouter();
  app.onError(createErrorHandler(createLogger({ level: 'silent', name: 'bench' })));
  app.use(
    '*',
    authentication({ kind: 'open' }, () => false),
  );
  app.route('/v1/lineage', lineage({ lineage: store }));
  return app;
}

interface Question {
  readonly name: string;
  /** The query string for iteration `i`: each asks about another pipeline. */
  readonly query: (pipeline: number) => string;
}

async function anchorIds(pool: pg.Pool, pipeline: number): Promise<{ version: string; snapshot: string }> {
  const latest = RUN_COUNT - PIPELINES + pipeline;
  const { rows } = await pool.query<{ version: string; snapshot: string }>(
    `select ${id('v', '$1::int')}::text as version, ${id('a', `$2::int * ${ARTIFACTS_PER_RUN}`)}::text as snapshot`,
    [latest, pipeline],
  );
  return rows[0]!;
}

async function main(): Promise<void> {
  const scratch = await startScratchPostgres('lineage');
  const database = createDatabase(scratch.url, { max: 10 });
  try {
    const seedStarted = performance.now();
    const counts = await seed(database.pool);
    const seedMs = performance.now() - seedStarted;
    console.error(`seeded in ${(seedMs / 1000).toFixed(1)} s: ${JSON.stringify(counts)}`);
    check(counts.executions === RUN_COUNT * EXECUTIONS_PER_RUN, 'executions were not all seeded');

    const app = lineageApp(new DrizzleLineageStore(database.db));
    const anchors = await Promise.all(Array.from({ length: PIPELINES }, (_, p) => anchorIds(database.pool, p)));
    const questions: Question[] = [
      { name: 'upstream of a deployment (serving now)', query: (p) => `deployment=pipeline-${p}&direction=upstream` },
      {
        name: 'upstream of a model version',
        query: (p) => `modelVersion=${anchors[p]!.version}&direction=upstream`,
      },
      {
        name: 'downstream of a snapshot',
        query: (p) => `artifact=${anchors[p]!.snapshot}&direction=downstream`,
      },
    ];
    const loadBefore = loadAverage();
    const results = [];
    const sizes: Record<string, { nodes: number[]; edges: number[]; truncated: number }> = {};
    for (const question of questions) {
      const samples: number[] = [];
      const size = { nodes: [] as number[], edges: [] as number[], truncated: 0 };
      for (let i = 0; i < warmup + runs; i++) {
        // Pipelines far apart, so no iteration finds the previous one's rows in the same pages.
        const pipeline = (i * 397 + 11) % PIPELINES;
        const started = performance.now();
        const response = await app.request(`/v1/lineage?${question.query(pipeline)}`);
        const graph = (await response.json()) as LineageGraphJson;
        const ms = performance.now() - started;
        check(response.status === 200, `${question.name}: ${response.status} ${JSON.stringify(graph)}`);
        if (i < warmup) continue;
        samples.push(ms);
        size.nodes.push(graph.nodes.length);
        size.edges.push(graph.edges.length);
        if (graph.truncated) size.truncated++;
      }
      check(
        size.nodes.every((n) => n > 1),
        `${question.name}: an answer held only its anchor`,
      );
      sizes[question.name] = size;
      const summary = summarize('GET /v1/lineage', samples);
      results.push({
        name: question.name,
        runs,
        warmup,
        startedAt: '',
        finishedAt: '',
        metrics: [summary],
      });
      console.error(
        `${question.name}: median ${summary.median.toFixed(1)} ms, nodes ${Math.min(...size.nodes)}–` +
          `${Math.max(...size.nodes)}, edges ${Math.min(...size.edges)}–${Math.max(...size.edges)}` +
          `${size.truncated ? `, ${size.truncated} truncated` : ''}`,
      );
    }
    const machine = describeMachine();
    console.log(
      `${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, ${machine.platform}, Node ${machine.node}; ` +
        `${counts.executions} executions, ${counts.artifacts} artifacts, ${counts.events} events; median of ${runs}`,
    );
    console.log(formatTable(results));
    console.log(`load average ${loadBefore.join(' ')} before the questions, ${loadAverage().join(' ')} after`);
    const failed = results.filter((r) => r.metrics[0]!.median >= GOAL_MS);
    console.log(
      `goal: each question under ${GOAL_MS} ms (median): ${failed.length === 0 ? 'PASS' : `FAIL (${failed.map((r) => r.name).join(', ')})`}`,
    );
    console.log(`results: ${writeResultFile('lineage', { counts, seedMs, runs, warmup, sizes, results, loadBefore })}`);
    if (failed.length > 0) process.exitCode = 1;
  } finally {
    await database.close();
    await scratch.stop();
  }
}

await main();
