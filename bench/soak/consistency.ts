/**
 * The registry and metadata after the pipeline soak's runs: every run completed once, with one row per stage and one
 * completed execution per stage; one model version per registered model bytes, created by exactly one run; every
 * artifact the metadata store, the registry and the runs' stage outputs reference present in S3 (model files
 * read back and checked against their sha256); each deployment with one champion revision, its `champion` alias on
 * that version, one revision per run that changed it; and the API answering each deployment with that version.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PlatformStorage } from '../../storage/open-storage.js';
import { isS3NotFound } from '../../storage/s3-errors.js';
import { authHeaders, JSON_HEADERS, predictPath, type Server } from '../serving/server-process.js';
import { invariant, type Invariant } from './invariants.js';
import type { PipelineSoakResult, SoakRun } from './pipeline-soak.js';

/** One row of the demo's features (a March 2001 flight), which every slice model's signature accepts. */
const PROBE_BODY = JSON.stringify({
  instances: [{ hour: 18, day_of_week: 4, distance: 2125, origin: 'PIT', destination: 'SEA' }],
});

/** The s3:// URIs anywhere in a JSON value. */
function urisIn(value: unknown, into: Set<string>): Set<string> {
  if (typeof value === 'string') {
    if (value.startsWith('s3://')) into.add(value);
  } else if (Array.isArray(value)) {
    for (const item of value) urisIn(item, into);
  } else if (value && typeof value === 'object') {
    for (const item of Object.values(value)) urisIn(item, into);
  }
  return into;
}

/** The size of the object at an `s3://bucket/key` URI, or why there is none. */
async function objectSize(storage: PlatformStorage, uri: string): Promise<number | string> {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(uri);
  if (!match) return 'not an s3://bucket/key URI';
  try {
    return (await storage.artifacts.client.statObject(match[1]!, match[2]!)).size;
  } catch (error) {
    return isS3NotFound(error) ? 'missing' : `stat failed: ${error instanceof Error ? error.message : String(error)}`;
  }
}

/** Runs `check` over `items` with at most `limit` at a time. */
async function eachLimited<T>(items: readonly T[], limit: number, check: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await check(items[next++]!);
    }),
  );
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) groups.set(key(item), [...(groups.get(key(item)) ?? []), item]);
  return groups;
}

/** What a soak run's invariants are checked against; `api` is the API that serves the deployments. */
export async function checkConsistency(
  storage: PlatformStorage,
  soak: PipelineSoakResult,
  api: Server | undefined,
): Promise<Invariant[]> {
  const pool = storage.database.pool;
  const invariants: Invariant[] = [];
  const { runs } = soak;
  const finished = runs.filter((r): r is SoakRun & { result: NonNullable<SoakRun['result']> } => !!r.result);

  const failures = runs.filter((r) => !r.result).map((r) => `run ${r.index} (${r.pipeline}): ${r.error}`);
  invariants.push(
    invariant(
      'pipelines: every run completed',
      failures.length === 0,
      failures.length === 0 ? `${runs.length} of ${runs.length}` : failures.join('; '),
    ),
  );

  // Each run's own records: its row, its stage rows and its executions.
  const runIds = runs.map((r) => r.runId).filter((id): id is string => id !== undefined);
  const workflowIds = runs.map((r) => r.workflowId).filter((id): id is string => id !== undefined);
  const runRows = await pool.query<{ id: string; status: string; outcome: string | null }>(
    'select id, status, outcome from pipeline_runs where id = any($1::uuid[])',
    [runIds],
  );
  const badRuns = runRows.rows.filter((row) => {
    const run = finished.find((r) => r.runId === row.id);
    return row.status !== 'succeeded' || !run || row.outcome !== run.result.outcome;
  });
  invariants.push(
    invariant(
      'pipelines: every run row succeeded with its workflow’s outcome',
      badRuns.length === 0 && runRows.rows.length === runIds.length,
      `${runRows.rows.length} rows for ${runIds.length} runs; ` +
        (badRuns.length === 0 ? 'all succeeded' : badRuns.map((r) => `${r.id} ${r.status}/${r.outcome}`).join(', ')),
    ),
  );
  const stageRows = await pool.query<{ run_id: string; stage: string; status: string; outputs: unknown }>(
    'select run_id, stage, status, outputs from pipeline_run_stages where run_id = any($1::uuid[])',
    [runIds],
  );
  const stageKeys = stageRows.rows.map((s) => `${s.run_id}/${s.stage}`);
  const duplicatedStages = stageKeys.length - new Set(stageKeys).size;
  const unfinishedStages = stageRows.rows.filter((s) => !['succeeded', 'skipped', 'cached'].includes(s.status));
  invariants.push(
    invariant(
      'pipelines: no duplicated or unfinished stage rows',
      duplicatedStages === 0 && unfinishedStages.length === 0,
      `${stageRows.rows.length} stage rows, ${duplicatedStages} duplicated, ${unfinishedStages.length} not ` +
        `succeeded/skipped/cached${unfinishedStages.length ? ` (${unfinishedStages.map((s) => `${s.stage} ${s.status}`).join(', ')})` : ''}`,
    ),
  );
  const executions = await pool.query<{ workflow_id: string; stage: string; n: number }>(
    `select workflow_id, stage, count(*)::int as n from executions
     where workflow_id = any($1::text[]) and state = 'complete' group by workflow_id, stage`,
    [workflowIds],
  );
  const repeated = executions.rows.filter((e) => e.n !== 1);
  invariants.push(
    invariant(
      'pipelines: one completed execution per run and stage',
      repeated.length === 0 && executions.rows.length > 0,
      `${executions.rows.length} (run, stage) pairs with a completed execution` +
        (repeated.length ? `; repeated: ${repeated.map((e) => `${e.workflow_id} ${e.stage} ×${e.n}`).join(', ')}` : ''),
    ),
  );

  // The registry: per model, exactly the versions its runs registered, each created by one run.
  const versionProblems: string[] = [];
  const deploymentProblems: string[] = [];
  let versionCount = 0;
  const byModel = groupBy(finished, (r) => r.result.model.modelName);
  for (const [model, modelRuns] of byModel) {
    const versions = await storage.registry.listVersions(model);
    versionCount += versions.length;
    const registered = new Set(modelRuns.map((r) => r.result.model.versionId));
    const stored = new Set(versions.map((v) => v.id));
    if (registered.size !== stored.size || [...registered].some((id) => !stored.has(id))) {
      versionProblems.push(
        `${model}: runs registered ${registered.size} version(s), the registry holds ${stored.size}`,
      );
    }
    for (const id of registered) {
      const creators = modelRuns.filter((r) => r.result.model.versionId === id && r.result.model.created);
      const version = versions.find((v) => v.id === id);
      if (creators.length !== 1) versionProblems.push(`${model}: version ${id} created by ${creators.length} runs`);
      else if (version && version.sourceRunId !== creators[0]!.runId) {
        versionProblems.push(
          `${model}: version ${id} names run ${version.sourceRunId}, created by ${creators[0]!.runId}`,
        );
      }
    }

    // Deployments: one champion revision, the alias on it, a revision per run that changed it.
    const deployment = modelRuns.find((r) => r.result.deployment)?.result.deployment?.deploymentName ?? model;
    const changed = modelRuns.filter((r) => r.result.deployment?.changed);
    const [active, history, champion] = await Promise.all([
      storage.deployments.activeRevisions(deployment),
      storage.deployments.deploymentHistory(deployment),
      storage.registry.champion(model),
    ]);
    const champions = active.filter((r) => r.role === 'champion');
    const head = champions[0];
    if (champions.length !== 1 || active.length !== 1 || head?.trafficPercent !== 100) {
      deploymentProblems.push(
        `${deployment}: ${active.length} active revision(s), ${champions.length} champion(s) (${head?.trafficPercent ?? '—'} %)`,
      );
    } else if (champion?.id !== head.versionId) {
      deploymentProblems.push(
        `${deployment}: champion alias on ${champion?.id}, champion revision on ${head.versionId}`,
      );
    } else if (champion.status !== 'blessed') {
      deploymentProblems.push(`${deployment}: champion ${champion.id} has status ${champion.status}`);
    }
    if (history.length !== changed.length) {
      deploymentProblems.push(`${deployment}: ${history.length} revisions, ${changed.length} runs changed it`);
    }
    const last = changed.at(-1);
    if (changed.length > 0 && !changed.some((r) => r.result.deployment?.versionId === head?.versionId)) {
      deploymentProblems.push(
        `${deployment}: serves ${head?.versionId}, deployed by no run (last ${last?.result.deployment?.versionId})`,
      );
    }
  }
  invariants.push(
    invariant(
      'registry: one model version per registered model bytes, created by one run',
      versionProblems.length === 0,
      versionProblems.length === 0 ? `${byModel.size} models, ${versionCount} versions` : versionProblems.join('; '),
    ),
  );
  invariants.push(
    invariant(
      'registry: deployments, aliases and revisions agree',
      deploymentProblems.length === 0,
      deploymentProblems.length === 0
        ? `${byModel.size} deployments, each one champion revision at 100 % with its alias, a blessed version`
        : deploymentProblems.join('; '),
    ),
  );

  // Artifacts: every row of the metadata store, every model file and every URI in the runs' stage outputs.
  const artifactRows = await pool.query<{ uri: string; bytes: string | null }>(
    `select uri, bytes from artifacts where state = 'live'`,
  );
  const referenced = new Set<string>();
  for (const s of stageRows.rows) urisIn(s.outputs, referenced);
  const versionRows = await pool.query<{ id: string; onnx_uri: string; sha256: string; artifact_uri: string | null }>(
    `select v.id, v.onnx_uri, v.sha256, a.uri as artifact_uri from model_versions v
     left join artifacts a on a.id = v.artifact_id where v.source_run_id = any($1::uuid[])`,
    [runIds],
  );
  const missing: string[] = [];
  const checked = new Set<string>();
  const bytesOf = new Map(artifactRows.rows.map((r) => [r.uri, r.bytes === null ? undefined : Number(r.bytes)]));
  const uris = [...new Set([...artifactRows.rows.map((r) => r.uri), ...referenced])];
  await eachLimited(uris, 8, async (uri) => {
    checked.add(uri);
    const size = await objectSize(storage, uri);
    const expected = bytesOf.get(uri);
    if (typeof size === 'string') missing.push(`${uri}: ${size}`);
    else if (expected !== undefined && size !== expected) missing.push(`${uri}: ${size} bytes, ${expected} recorded`);
  });
  for (const v of versionRows.rows) {
    if (v.artifact_uri !== v.onnx_uri) missing.push(`version ${v.id}: artifact ${v.artifact_uri}, onnx ${v.onnx_uri}`);
    // Read back whole: `get` checks the bytes against the version's sha256.
    const read = await storage.artifacts.get({ uri: v.onnx_uri, sha256: v.sha256 }).then(
      () => undefined,
      (e: unknown) => (e instanceof Error ? e.message : String(e)),
    );
    if (read !== undefined) missing.push(`${v.onnx_uri}: ${read}`);
  }
  invariants.push(
    invariant(
      'artifacts: everything referenced exists in S3',
      missing.length === 0,
      `${artifactRows.rows.length} live artifact rows and ${referenced.size} URIs in the runs' stage outputs ` +
        `(${checked.size} distinct objects) present; ${versionRows.rows.length} model files read back against their ` +
        `sha256` +
        (missing.length ? `; problems: ${missing.slice(0, 10).join('; ')}` : ''),
    ),
  );

  // The API: each deployment answers with its champion (the pool loads new deployments in the background).
  if (api) {
    const wrong: string[] = [];
    const began = performance.now();
    for (const [model] of byModel) {
      const champion = await storage.registry.champion(model);
      const deadline = performance.now() + 60_000;
      for (;;) {
        const response = await fetch(`${api.url}${predictPath(model)}`, {
          method: 'POST',
          headers: { ...JSON_HEADERS, ...authHeaders(api.token) },
          body: PROBE_BODY,
        });
        const body = (await response.json()) as { model?: { versionId?: string } };
        if (response.status === 200 && body.model?.versionId === champion?.id) break;
        if (performance.now() > deadline) {
          wrong.push(`${model}: ${response.status} ${JSON.stringify(body).slice(0, 200)}`);
          break;
        }
        await sleep(250);
      }
    }
    invariants.push(
      invariant(
        'serving: the API answers every new deployment with its champion',
        wrong.length === 0,
        wrong.length === 0
          ? `${byModel.size} deployments, all served within ${((performance.now() - began) / 1000).toFixed(1)} s of the check`
          : wrong.join('; '),
      ),
    );
  }
  return invariants;
}
