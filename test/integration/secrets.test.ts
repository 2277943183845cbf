/**
 * Secrets never leave the places they are kept (issue 15, Security 5). `npm start` runs the demo as a user does,
 * with every secret set to a distinctive random string: the S3 keys (the local MinIO's root credentials), the
 * platform database's password (an external DATABASE_URL: a role of its own on the test stack's PostgreSQL; the
 * embedded server's superuser password is the fixed `postgres`, which no search can tell apart), the admin API key
 * the start makes, a second API key, a data connection's password, and the connection key file. Then a pipeline
 * reads that connection, a model is scored, and requests that fail are made on purpose. Every log line the platform
 * wrote, every response the test received, every workflow history, every object in the bucket and every row of the
 * platform database is searched for each secret, raw and encoded (base64, base64url, URL-encoded).
 *
 * Not covered: webhooks (the platform has none yet).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { Client as MinioClient } from 'minio';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { loadConfig, type ServiceEndpoints } from '../../core/config.js';
import { createLogger } from '../../core/logger.js';
import { runFlightsDemo, type DemoReport } from '../../demo/flights.js';
import { openDemoSession } from '../../demo/session.js';
import { adminKeyFile } from '../../server/admin-key.js';
import { connectionsKeyFile } from '../../storage/connection-store.js';
import {
  BUCKET,
  cleanUpStarts,
  launch,
  repoRoot,
  scenario,
  sleep,
  stopCleanly,
  waitForReady,
  type Scenario,
} from '../support/npm-start.js';
import { syntheticCsv } from '../support/pipelines.js';
import { testEndpoints } from '../support/stack.js';

afterEach(cleanUpStarts);

const suffix = randomBytes(4).toString('hex');
/** Secrets made here; each is long and random enough that a hit cannot be chance. */
const SECRETS = {
  // MinIO caps the root user at 20 characters and the root password at 40.
  's3 access key': `akey${randomBytes(7).toString('hex')}`,
  's3 secret key': `s3sk${randomBytes(16).toString('hex')}`,
  'database password': `pgpw${randomBytes(16).toString('hex')}`,
  'connection password': `cnpw${randomBytes(16).toString('hex')}`,
};
const OWNER_ROLE = `leak_owner_${suffix}`;
const READER_ROLE = `leak_reader_${suffix}`;
const DATABASE = `leak_${suffix}`;

const admin = new pg.Pool({ connectionString: testEndpoints().databaseUrl, max: 1 });

afterAll(async () => {
  await admin.query(`drop database if exists ${pg.escapeIdentifier(DATABASE)} with (force)`).catch(() => undefined);
  for (const role of [READER_ROLE, OWNER_ROLE]) {
    await admin.query(`drop role if exists ${pg.escapeIdentifier(role)}`).catch(() => undefined);
  }
  await admin.end();
});

/** A database and owner role on the test stack's PostgreSQL, with a table that a read-only role may read. */
async function prepareDatabase(): Promise<{ databaseUrl: string; readerUrl: string }> {
  const target = new URL(testEndpoints().databaseUrl);
  const url = (user: string, password: string) =>
    `postgres://${user}:${encodeURIComponent(password)}@${target.hostname}:${target.port}/${DATABASE}`;
  await admin.query(
    `create role ${pg.escapeIdentifier(OWNER_ROLE)} login password ${pg.escapeLiteral(SECRETS['database password'])}`,
  );
  await admin.query(
    `create role ${pg.escapeIdentifier(READER_ROLE)} login password ${pg.escapeLiteral(SECRETS['connection password'])}`,
  );
  await admin.query(`create database ${pg.escapeIdentifier(DATABASE)} owner ${pg.escapeIdentifier(OWNER_ROLE)}`);
  const databaseUrl = url(OWNER_ROLE, SECRETS['database password']);
  const owner = new pg.Client({ connectionString: databaseUrl });
  await owner.connect();
  try {
    await owner.query('create schema warehouse');
    await owner.query('create table warehouse.rows (x integer not null, kind text not null, y integer not null)');
    const rows = syntheticCsv()
      .trim()
      .split('\n')
      .slice(1)
      .map((line) => line.split(','));
    await owner.query(
      'insert into warehouse.rows select * from unnest($1::int[], $2::text[], $3::int[])',
      [0, 1, 2].map((i) => rows.map((r) => r[i])),
    );
    await owner.query(`grant usage on schema warehouse to ${pg.escapeIdentifier(READER_ROLE)}`);
    await owner.query(`grant select on warehouse.rows to ${pg.escapeIdentifier(READER_ROLE)}`);
  } finally {
    await owner.end();
  }
  return { databaseUrl, readerUrl: url(READER_ROLE, SECRETS['connection password']) };
}

// ---------------------------------------------------------------------------------------------------------------------
// What is searched, and how

/** Where a text came from, for the failure message. */
interface Haystack {
  readonly where: string;
  readonly text: string;
}

/**
 * The forms a secret can take on its way out: itself, URL-encoded, and base64/base64url at each of the three byte
 * alignments it can have inside a longer encoded string (`user:secret` in a Basic header, say), without the
 * characters that depend on its neighbours.
 */
function encodedForms(secret: string): string[] {
  const forms = new Set([secret, encodeURIComponent(secret)]);
  for (const shift of [0, 1, 2]) {
    const bytes = Buffer.concat([Buffer.alloc(shift, 0x20), Buffer.from(secret, 'utf8')]);
    for (const encoding of ['base64', 'base64url'] as const) {
      const encoded = bytes.toString(encoding).replace(/=+$/, '');
      // The first characters mix in the padding bytes, the last ones what follows: drop both.
      const start = Math.ceil((shift * 4) / 3);
      forms.add(encoded.slice(start + 1, Math.max(start + 1, encoded.length - 2)));
    }
  }
  return [...forms].filter((form) => form.length >= 16);
}

/** `[secret name, form, where]` for every form of every secret found in a haystack. */
function findLeaks(secrets: Record<string, string>, haystacks: readonly Haystack[]): string[] {
  const leaks: string[] = [];
  for (const [name, secret] of Object.entries(secrets)) {
    for (const form of encodedForms(secret)) {
      for (const { where, text } of haystacks) {
        const at = text.indexOf(form);
        if (at >= 0) {
          const context = text.slice(Math.max(0, at - 120), at + form.length + 40).replaceAll(form, `<${name}>`);
          leaks.push(`${name}${form === secret ? '' : ' (encoded)'} in ${where}: …${context}…`);
        }
      }
    }
  }
  return leaks;
}

/** Every file under `dir`, read as text (the logs folder: JSON lines, service logs). */
function filesUnder(dir: string): Haystack[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name))
    .map((file) => ({ where: file, text: fs.readFileSync(file).toString('latin1') }));
}

/**
 * Every string and byte field of a value as text, bytes decoded as UTF-8: a history's payloads are JSON in bytes,
 * which JSON.stringify would show as base64 (protobufjs's toJSON) and so hide from a plain search.
 */
function textOf(value: unknown, out: string[] = [], depth = 0): string[] {
  if (depth > 64 || value === null || value === undefined) return out;
  if (typeof value === 'string') out.push(value);
  else if (value instanceof Uint8Array) out.push(Buffer.from(value).toString('utf8'));
  else if (value instanceof Date) out.push(value.toISOString());
  else if (typeof value === 'object') {
    for (const [key, field] of Object.entries(value)) {
      out.push(key);
      textOf(field, out, depth + 1);
    }
  } else out.push(String(value));
  return out;
}

/** Every workflow of the namespace (children and schedules' runs included), each history as text. */
async function workflowHistories(s: Scenario): Promise<Haystack[]> {
  const connection = await Connection.connect({ address: `127.0.0.1:${s.ports.temporal}` });
  try {
    const client = new Client({ connection, namespace: 'default' });
    const haystacks: Haystack[] = [];
    for await (const execution of client.workflow.list()) {
      const handle = client.workflow.getHandle(execution.workflowId, execution.runId);
      const history = await handle.fetchHistory();
      haystacks.push({
        where: `history of ${execution.type} ${execution.workflowId}/${execution.runId}`,
        text: textOf(history).join('\n'),
      });
    }
    return haystacks;
  } finally {
    await connection.close();
  }
}

/** Every object in every bucket, as bytes read as latin1 text (a secret in a binary artifact still shows). */
async function bucketObjects(s: Scenario): Promise<Haystack[]> {
  const client = new MinioClient({
    endPoint: '127.0.0.1',
    port: s.ports.minio,
    useSSL: false,
    accessKey: SECRETS['s3 access key'],
    secretKey: SECRETS['s3 secret key'],
    region: 'us-east-1',
    pathStyle: true,
  });
  const haystacks: Haystack[] = [];
  for (const bucket of await client.listBuckets()) {
    const names: string[] = [];
    for await (const item of client.listObjects(bucket.name, '', true) as AsyncIterable<{ name?: string }>) {
      if (item.name) names.push(item.name);
    }
    for (const name of names) {
      const stream = await client.getObject(bucket.name, name);
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      haystacks.push({ where: `s3://${bucket.name}/${name}`, text: Buffer.concat(chunks).toString('latin1') });
    }
  }
  return haystacks;
}

/** Every row of every table of the platform database, as JSON (keys are stored hashed, passwords sealed). */
async function databaseRows(databaseUrl: string): Promise<Haystack[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows: tables } = await client.query<{ schema: string; name: string }>(
      `select table_schema as schema, table_name as name from information_schema.tables
        where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema', 'warehouse')`,
    );
    const haystacks: Haystack[] = [];
    for (const table of tables) {
      const qualified = `${pg.escapeIdentifier(table.schema)}.${pg.escapeIdentifier(table.name)}`;
      const { rows } = await client.query(`select * from ${qualified}`);
      haystacks.push({ where: `table ${table.schema}.${table.name}`, text: textOf(rows).join('\n') });
    }
    return haystacks;
  } finally {
    await client.end();
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The API, with every response kept

interface Answer {
  readonly status: number;
  readonly body: string;
}

function apiClient(s: Scenario, token: string) {
  const responses: Haystack[] = [];
  const call = async (
    method: string,
    route: string,
    body?: unknown,
    headers: Record<string, string> = { authorization: `Bearer ${token}` },
  ): Promise<Answer> => {
    const response = await fetch(`http://127.0.0.1:${s.ports.api}${route}`, {
      method,
      headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    const headerText = [...response.headers].map(([k, v]) => `${k}: ${v}`).join('\n');
    responses.push({ where: `${method} ${route} (${response.status})`, text: `${headerText}\n\n${text}` });
    return { status: response.status, body: text };
  };
  return { call, responses };
}

/**
 * The flight-delay demo as `npm run demo` runs it against a running platform (a session on its services; its
 * workers do the work), on one week of the data with a small model, as test/integration/demo.test.ts does.
 */
async function runDemoAgainst(s: Scenario, log: string[]): Promise<DemoReport> {
  const config = loadConfig(s.env, repoRoot);
  const endpoints: ServiceEndpoints = {
    temporal: { address: `127.0.0.1:${s.ports.temporal}`, namespace: config.temporal.namespace, uiUrl: undefined },
    databaseUrl: config.database.url!,
    s3: {
      endpoint: `http://127.0.0.1:${s.ports.minio}`,
      accessKey: config.s3.accessKey,
      secretKey: config.s3.secretKey,
      bucket: config.s3.bucket,
      region: config.s3.region,
    },
  };
  const logger = createLogger({ level: 'debug', name: 'demo', destination: { write: (line) => log.push(line) } });
  const session = await openDemoSession({ config, endpoints, logger });
  try {
    return await runFlightsDemo(session.deps, {
      landing: { key: 'landing/flights/2001-01-week1.parquet', from: '2001-01-01', to: '2001-01-08' },
      definition: {
        split: { kind: 'time', column: 'date', trainBefore: '2001-01-06', evalBefore: '2001-01-08' },
        trainer: { kind: 'gradient_boosted_trees', params: { maxIterations: 20, seed: 0 } },
        evaluation: { slices: ['origin'], minSliceRows: 500 },
        validation: { thresholds: [{ metric: 'auc', min: 0.55 }], champion: { metric: 'auc' } },
      },
      onProgress: (line) => log.push(`${line}\n`),
    });
  } finally {
    await session.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------------

describe('encodedForms', () => {
  it('finds a secret inside longer base64 at every alignment', () => {
    const secret = 's3sk0123456789abcdef0123456789abcdef';
    const forms = encodedForms(secret);
    for (const prefix of ['', 'a', 'ab', 'user:', 'minio:']) {
      const b64 = Buffer.from(`${prefix}${secret}!`).toString('base64');
      expect(
        forms.some((form) => b64.includes(form)),
        prefix,
      ).toBe(true);
    }
    expect(encodedForms('p@ss w/rd 0123456789')).toContain('p%40ss%20w%2Frd%200123456789');
  });
});

describe('secrets, after the demo has run on npm start', () => {
  it('appear in no log line, response, workflow history, artifact or database row', async () => {
    const { databaseUrl, readerUrl } = await prepareDatabase();
    const s = await scenario({
      MLOPS_DEMO: 'false',
      LOG_LEVEL: 'debug',
      DATABASE_URL: databaseUrl,
      S3_ACCESS_KEY: SECRETS['s3 access key'],
      S3_SECRET_KEY: SECRETS['s3 secret key'],
    });
    const run = launch(s);
    await waitForReady(run, 120_000);

    const adminToken = fs.readFileSync(adminKeyFile(s.dataDir), 'utf8').trim();
    expect(adminToken).toMatch(/^mlk_/);
    const { call, responses } = apiClient(s, adminToken);

    // A key made through the API: its token is in the one response that creates it, and nowhere else.
    const created = await call('POST', '/v1/keys', { name: 'leak-test', scopes: ['read', 'predict'] });
    expect(created.status, created.body).toBe(201);
    const secondToken = (JSON.parse(created.body) as { token: string }).token;
    const creation = responses.pop()!;

    // A connection whose password is given in its URL; a pipeline that reads through it.
    const connection = await call('POST', '/v1/connections', { name: 'leak-warehouse', url: readerUrl });
    expect(connection.status, connection.body).toBe(201);
    const definition = {
      name: `leak-${suffix}`,
      source: { kind: 'postgres', connection: 'leak-warehouse', query: 'select x, kind, y from warehouse.rows' },
      label: { name: 'y', expression: 'y', task: 'binary' },
      features: [
        { name: 'x', expression: 'x', kind: 'numeric' },
        { name: 'kind', expression: 'kind' },
      ],
      split: { kind: 'hash', key: 'x', evalFraction: 0.3 },
      trainer: { kind: 'logistic_regression', params: {} },
      retry: { maximumAttempts: 2, initialIntervalSeconds: 0.2 },
    };
    const saved = await call('POST', '/v1/pipelines', definition);
    expect(saved.status, saved.body).toBe(201);
    const startedRun = await call('POST', `/v1/pipelines/${definition.name}/runs`, {});
    expect(startedRun.status, startedRun.body).toBe(201);
    const runId = (JSON.parse(startedRun.body) as { run: { id: string } }).run.id;

    // The demo, on one week of its data (the whole quarter takes minutes here), with npm start's workers doing
    // the work; its own log lines are searched too.
    const demoLog: string[] = [];
    const demo = runDemoAgainst(s, demoLog);
    demo.catch(() => undefined); // awaited below; a failure before then must not be an unhandled rejection

    // Requests that fail on purpose: their error bodies are searched too.
    await call('POST', '/v1/connections', { name: 'Bad Name', url: readerUrl });
    await call('POST', '/v1/connections', {
      name: 'leak-bad-port',
      url: readerUrl.replace(/:\d+\//, ':99999/'),
    });
    await call('POST', '/v1/connections', { name: 'leak-warehouse', url: readerUrl });
    await call('POST', '/v1/connections', {
      name: 'leak-not-pg',
      url: readerUrl.replace('postgres:', 'mysql:'),
    });
    await call('POST', '/v1/pipelines', {
      ...definition,
      source: { kind: 'postgres', url: readerUrl, query: 'select 1' },
    });
    await call('POST', '/v1/pipelines', { ...definition, source: { uri: `s3://${BUCKET}/landing/none.csv` } });
    await call('POST', '/v1/pipelines', '{"name": ');
    // A connection nothing answers on, and a query that fails: the probe's errors name neither password.
    await call('POST', '/v1/connections', { name: 'leak-dead', url: readerUrl.replace(/:\d+\//, ':1/') });
    await call('POST', '/v1/pipelines', {
      ...definition,
      name: `leak-dead-${suffix}`,
      source: { kind: 'postgres', connection: 'leak-dead', query: 'select 1 as x' },
    });
    await call('POST', '/v1/pipelines', {
      ...definition,
      name: `leak-bad-${suffix}`,
      source: { ...definition.source, query: 'select x from warehouse.nowhere' },
    });
    await call('GET', '/v1/pipelines', undefined, {});
    await call('GET', '/v1/pipelines', undefined, { authorization: `Bearer ${adminToken}x` });
    await call('GET', '/v1/pipelines', undefined, {
      authorization: `Basic ${Buffer.from(`a:${adminToken}`).toString('base64')}`,
    });
    await call(
      'POST',
      '/v1/keys',
      { name: 'leak-test-2', scopes: ['admin'] },
      { authorization: `Bearer ${secondToken}` },
    );
    await call('GET', '/v1/runs/not-a-uuid');
    await call('GET', '/v1/pipelines/flights-delay/versions/3000000000');

    // The pipeline over the connection, then the demo, run to their ends.
    const deadline = Date.now() + 240_000;
    for (;;) {
      const answer = await call('GET', `/v1/runs/${runId}`);
      const status = (JSON.parse(answer.body) as { status?: string }).status;
      if (status === 'succeeded' || status === 'failed' || status === 'cancelled') {
        expect(status, answer.body).toBe('succeeded');
        break;
      }
      if (Date.now() > deadline) throw new Error(`run ${runId} still ${status}:\n${answer.body}`);
      await sleep(500);
    }
    expect((await demo).result.outcome).toBe('deployed');

    // Everything a reader may see, with both keys.
    const routes = [
      '/healthz',
      '/readyz',
      '/metrics',
      '/v1/keys',
      '/v1/connections',
      '/v1/connections/leak-warehouse',
      '/v1/pipelines',
      `/v1/pipelines/${definition.name}`,
      `/v1/pipelines/${definition.name}/versions/1`,
      '/v1/pipelines/flights-delay',
      '/v1/runs',
      `/v1/runs/${runId}`,
      '/v1/models',
      '/v1/models/flights-delay',
      '/v1/models/flights-delay/versions',
      `/v1/models/${definition.name}/versions/1`,
      '/v1/deployments',
      '/v1/deployments/flights-delay',
      '/openapi.json',
    ];
    for (const route of routes) await call('GET', route);
    const runs = JSON.parse((await call('GET', '/v1/runs')).body) as { runs: { id: string }[] };
    for (const { id } of runs.runs) await call('GET', `/v1/runs/${id}`);
    await call('POST', '/v1/models/flights-delay/predict', {
      instances: [{ hour: 8, day_of_week: 2, distance: 500, origin: 'SFO', destination: 'LAX' }],
    });
    await call('GET', '/metrics');
    await call('GET', '/v1/pipelines', undefined, { authorization: `Bearer ${secondToken}` });

    const stored = [...(await workflowHistories(s)), ...(await bucketObjects(s)), ...(await databaseRows(databaseUrl))];
    // The platform stops as a user stops it, so every log line is written out.
    await stopCleanly(s, run);

    const haystacks: Haystack[] = [
      { where: 'npm start stdout/stderr', text: run.output() },
      { where: 'the demo session log', text: demoLog.join('') },
      ...filesUnder(path.join(s.dataDir, 'logs')),
      ...responses,
      ...stored,
    ];
    const secrets = {
      ...SECRETS,
      'admin API key': adminToken,
      'second API key': secondToken,
      'connections key': fs.readFileSync(connectionsKeyFile(s.dataDir), 'utf8').trim(),
    };
    // The search can find what it looks for: the key's token is in the response that created it.
    expect(findLeaks(secrets, [creation])).toEqual([expect.stringMatching(/^second API key in POST \/v1\/keys/)]);
    // What was searched: the platform's JSON lines (stdout: not a terminal), the services' logs, the histories of
    // both runs, their artifacts.
    expect(run.output()).toMatch(/"msg":"temporal-mlops is ready"/);
    const where = haystacks.map((h) => h.where).join('\n');
    for (const log of ['temporal.log', 'minio.log']) expect(where).toContain(log);
    expect(haystacks.filter((h) => h.where.startsWith('history of trainingPipeline')).length).toBeGreaterThan(1);
    expect(haystacks.filter((h) => h.where.startsWith(`s3://${BUCKET}/`)).length).toBeGreaterThan(5);
    // Payloads are searched as text: the connection pipeline's history names its connection and query.
    const connectionRun = haystacks.filter((h) => h.where.startsWith('history of trainingPipeline'));
    expect(connectionRun.some((h) => h.text.includes('leak-warehouse') && h.text.includes('warehouse.rows'))).toBe(
      true,
    );
    // The start banner shows the database user, with the password masked.
    expect(run.output()).toContain(`${OWNER_ROLE}:***@`);
    expect(findLeaks(secrets, haystacks)).toEqual([]);
  }, 420_000);
});
