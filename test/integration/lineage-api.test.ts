/**
 * Lineage over HTTP (`GET /v1/lineage`, `GET /v1/artifacts/{id}`) on what real runs recorded: the synthetic pipeline
 * run twice on the same file (the second run reads the first's snapshot, trains the same bytes, so the same version,
 * and deploys nothing), then each question asked as one call: what produced the version serving now, and which runs
 * and models used the snapshot.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../server/app.js';
import type { ErrorBody } from '../../server/errors.js';
import type { LineageGraphJson, LineageNodeJson } from '../../server/routes/lineage-responses.js';
import type { TrainingPipelineResult } from '../../workflows/index.js';
import { anyNamedKey, withKey } from '../support/auth.js';
import type { TestPlatform } from '../support/platform.js';
import { testLogger } from '../support/platform.js';
import { runPipelineToEnd, syntheticCsv, syntheticDefinition } from '../support/pipelines.js';
import { startTestPlatform, type RunningTestPlatform } from '../support/running-platform.js';

const name = `lineage-${randomUUID().slice(0, 8)}`;
let started: RunningTestPlatform | undefined;
let platform: TestPlatform;
let app: ReturnType<typeof createApp>;
let dir: string | undefined;
let first: { runId: string; result: TrainingPipelineResult };
let second: { runId: string; result: TrainingPipelineResult };

beforeAll(async () => {
  started = await startTestPlatform();
  platform = started.platform;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-api-'));
  const csv = path.join(dir, 'events.csv');
  // Categories of its own: a schema is content-addressed, so another test file's pipeline over the same synthetic
  // data would share this schema's node and show up downstream of this snapshot (through its register stage).
  fs.writeFileSync(csv, syntheticCsv({ kindPrefix: `lineage-${randomUUID().slice(0, 8)}-` }));
  await platform.storage.pipelines.saveDefinition(syntheticDefinition(name, csv), 'test');
  first = await runPipelineToEnd(started.runner, name);
  second = await runPipelineToEnd(started.runner, name);
  app = createApp({
    logger: testLogger,
    readiness: [],
    auth: anyNamedKey,
    version: 'test',
    bodyLimitBytes: 64 * 1024,
    stores: platform.storage,
  });
}, 120_000);

afterAll(async () => {
  await started?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function get(url: string): Promise<{ status: number; type: string; text: string }> {
  const res = await app.request(url, withKey());
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

async function graph(query: string): Promise<LineageGraphJson> {
  const res = await get(`/v1/lineage?${query}`);
  expect(res.status, res.text).toBe(200);
  return JSON.parse(res.text) as LineageGraphJson;
}

async function refusal(url: string, status: number): Promise<ErrorBody['error']> {
  const res = await get(url);
  expect(res.status, res.text).toBe(status);
  return (JSON.parse(res.text) as ErrorBody).error;
}

const ofKind = <K extends LineageNodeJson['kind']>(g: LineageGraphJson, kind: K) =>
  g.nodes.filter((n): n is Extract<LineageNodeJson, { kind: K }> => n.kind === kind);

/** The snapshot both runs read: what the first run's extract execution wrote as `examples`. */
function snapshotOf(g: LineageGraphJson): string {
  const extract = ofKind(g, 'execution').find((x) => x.stage === 'extract' && x.runId === first.runId);
  const edge = g.edges.find((e) => e.from === extract?.ref && e.kind === 'output' && e.role === 'examples');
  expect(edge, 'the extract execution and its output').toBeDefined();
  return edge!.to.replace(/^artifact:/, '');
}

describe('the runs', () => {
  it('deployed the first version and reused its snapshot and version in the rerun', () => {
    expect(first.result.outcome).toBe('deployed');
    expect(second.result.model.versionId).toBe(first.result.model.versionId);
  });
});

describe('GET /v1/lineage upstream: what produced the version serving now', () => {
  it('from the deployment: the champion, its Model artifact, the run that trained it and the data, in one call', async () => {
    const g = await graph(`deployment=${name}&direction=upstream`);
    const deployment = ofKind(g, 'deployment');
    expect(deployment).toMatchObject([{ name, model: name, depth: 0 }]);
    expect(g.anchor).toBe(deployment[0]!.ref);
    expect(g.nodes[0]!.ref).toBe(g.anchor);
    expect(g.truncated).toBe(false);

    const version = `model_version:${first.result.model.versionId}`;
    expect(ofKind(g, 'model_version')).toMatchObject([{ ref: version, model: name, version: 1, depth: 1 }]);
    expect(g.edges).toContainEqual({
      from: version,
      to: g.anchor,
      kind: 'serves',
      role: 'champion',
      trafficPercent: 100,
    });
    expect(g.edges).toContainEqual(
      expect.objectContaining({ from: `run:${first.runId}`, to: version, kind: 'trained' }),
    );
    const model = g.edges.find((e) => e.to === version && e.kind === 'registered_as');
    expect(g.nodes.find((n) => n.ref === model?.from)).toMatchObject({ kind: 'artifact', type: 'Model' });

    const types = new Set(ofKind(g, 'artifact').map((a) => a.type));
    for (const type of ['Dataset', 'Statistics', 'Schema', 'Transform', 'Model', 'Evaluation']) {
      expect(types, type).toContain(type);
    }
    expect(ofKind(g, 'run').find((r) => r.id === first.runId)).toMatchObject({
      pipeline: name,
      status: 'succeeded',
      outcome: 'deployed',
    });
    // Every edge joins two nodes of the answer, and points the way data flows: upstream, each node but the anchor
    // feeds one a step nearer, and none feeds one it is more than a step further from.
    const depth = new Map(g.nodes.map((n) => [n.ref, n.depth]));
    for (const edge of g.edges) {
      expect(depth.has(edge.from) && depth.has(edge.to), `${edge.from} -> ${edge.to}`).toBe(true);
      expect(depth.get(edge.from)!, `${edge.from} -> ${edge.to}`).toBeLessThanOrEqual(depth.get(edge.to)! + 1);
    }
    for (const node of g.nodes.filter((n) => n.depth > 0)) {
      const nearer = g.edges.filter((e) => e.from === node.ref && depth.get(e.to) === node.depth - 1);
      expect(nearer.length, node.ref).toBeGreaterThan(0);
    }
  });

  it('from the model version: the same graph without the deployment', async () => {
    const fromDeployment = await graph(`deployment=${name}&direction=upstream&depth=20`);
    const g = await graph(`modelVersion=${first.result.model.versionId}&direction=upstream&depth=20`);
    expect(g.anchor).toBe(`model_version:${first.result.model.versionId}`);
    expect(ofKind(g, 'deployment')).toEqual([]);
    expect(new Set(g.nodes.map((n) => n.ref))).toEqual(
      new Set(fromDeployment.nodes.filter((n) => n.kind !== 'deployment').map((n) => n.ref)),
    );
  });

  it('stops at the depth asked for', async () => {
    const g = await graph(`modelVersion=${first.result.model.versionId}&depth=1`);
    expect(g.direction).toBe('upstream');
    expect(g.nodes.map((n) => [n.kind, n.depth]).sort()).toEqual([
      ['artifact', 1],
      ['model_version', 0],
      ['run', 1],
    ]);
    expect(g.edges.map((e) => e.kind).sort()).toEqual(['registered_as', 'trained']);
  });
});

describe('GET /v1/lineage downstream: which runs and models used this snapshot', () => {
  it('from the snapshot: both runs, the version and the deployment serving it, in one call', async () => {
    const snapshot = snapshotOf(await graph(`run=${first.runId}`));
    const g = await graph(`artifact=${snapshot}&direction=downstream`);
    expect(g.anchor).toBe(`artifact:${snapshot}`);
    expect(g.nodes[0]).toMatchObject({ kind: 'artifact', type: 'Dataset', depth: 0 });
    expect(
      ofKind(g, 'run')
        .map((r) => r.id)
        .sort(),
    ).toEqual([first.runId, second.runId].sort());
    expect(ofKind(g, 'model_version').map((v) => v.id)).toEqual([first.result.model.versionId]);
    expect(ofKind(g, 'deployment').map((d) => d.name)).toEqual([name]);
    expect(g.edges).toContainEqual(
      expect.objectContaining({ from: `model_version:${first.result.model.versionId}`, kind: 'serves' }),
    );
    // Downstream means downstream: the extract executions that wrote the snapshot are not in it.
    expect(ofKind(g, 'execution').filter((x) => x.stage === 'extract')).toEqual([]);
  });

  it('from a run: its own outputs, the version it trained and where it serves', async () => {
    const g = await graph(`run=${first.runId}&direction=downstream`);
    expect(g.anchor).toBe(`run:${first.runId}`);
    const executions = ofKind(g, 'execution').filter((x) => x.runId === first.runId);
    expect(executions.map((x) => x.stage)).toEqual(expect.arrayContaining(['extract', 'train', 'register']));
    expect(ofKind(g, 'artifact').map((a) => a.type)).toEqual(expect.arrayContaining(['Dataset', 'Model']));
    expect(ofKind(g, 'model_version').map((v) => v.id)).toEqual([first.result.model.versionId]);
    expect(ofKind(g, 'deployment').map((d) => d.name)).toEqual([name]);
  });
});

describe('GET /v1/lineage formats', () => {
  it('answers Graphviz DOT and a Mermaid flowchart of the same graph', async () => {
    const query = `modelVersion=${first.result.model.versionId}&direction=upstream`;
    const json = await graph(query);
    const dot = await get(`/v1/lineage?${query}&format=dot`);
    expect(dot.status).toBe(200);
    expect(dot.type).toBe('text/vnd.graphviz; charset=utf-8');
    expect(dot.text).toMatch(/^\/\/ lineage upstream of model_version:[^\n]+\ndigraph lineage \{\n/);
    expect(dot.text.trimEnd().endsWith('}')).toBe(true);
    for (const node of json.nodes) expect(dot.text).toContain(`"${node.ref}" [label=`);
    expect(dot.text.match(/ -> /g)).toHaveLength(json.edges.length);

    const mermaid = await get(`/v1/lineage?${query}&format=mermaid`);
    expect(mermaid.status).toBe(200);
    expect(mermaid.type).toBe('text/plain; charset=utf-8');
    const lines = mermaid.text.trimEnd().split('\n');
    expect(lines[0]).toBe('flowchart LR');
    expect(lines.filter((l) => / -->\|/.test(l))).toHaveLength(json.edges.length);
    expect(lines.filter((l) => /^ {2}n\d+[[({]/.test(l))).toHaveLength(json.nodes.length);
    expect(lines.at(-1)).toBe('  style n0 stroke-width:3px');
  });
});

describe('GET /v1/artifacts/{id}', () => {
  it('answers the snapshot with the execution that produced it and those of both runs that read it', async () => {
    const snapshot = snapshotOf(await graph(`run=${first.runId}`));
    const res = await get(`/v1/artifacts/${snapshot}`);
    expect(res.status, res.text).toBe(200);
    const body = JSON.parse(res.text) as {
      type: string;
      uri: string;
      sha256: string;
      properties: Record<string, unknown>;
      createdAt: string;
      producedBy: { role: string; execution: { type: string; stage: string; runId: string } }[];
      consumedBy: { role: string; execution: { stage: string; runId: string } }[];
      truncated: boolean;
      links: { upstream: string; downstream: string };
    };
    expect(body).toMatchObject({ id: snapshot, type: 'Dataset', truncated: false });
    expect(body.uri).toMatch(/^s3:\/\//);
    expect(body.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(Date.parse(body.createdAt)).not.toBeNaN();
    expect(body.producedBy[0]).toMatchObject({ role: 'examples', execution: { stage: 'extract', runId: first.runId } });
    const readers = new Set(body.consumedBy.map((c) => `${c.execution.runId}/${c.execution.stage}`));
    for (const run of [first.runId, second.runId]) {
      for (const stage of ['statistics', 'prepare']) expect(readers, `${run}/${stage}`).toContain(`${run}/${stage}`);
    }
    expect((await get(body.links.downstream)).status).toBe(200);
  });
});

describe('refusals', () => {
  const unknown = randomUUID();

  it('answers 404 for an anchor that does not exist', async () => {
    for (const query of [`artifact=${unknown}`, `modelVersion=${unknown}`, `run=${unknown}`, `deployment=no-${name}`]) {
      expect((await refusal(`/v1/lineage?${query}`, 404)).code, query).toBe('not_found');
    }
    expect((await refusal(`/v1/artifacts/${unknown}`, 404)).message).toContain(unknown);
  });

  it('answers 400 naming the field for malformed ids, a bad depth, direction or format, and the anchors', async () => {
    const cases: [string, string][] = [
      ['artifact=not-a-uuid', 'query.artifact'],
      ['modelVersion=42', 'query.modelVersion'],
      ['run=x', 'query.run'],
      ['deployment=bad%20name', 'query.deployment'],
      [`artifact=${unknown}&depth=51`, 'query.depth'],
      [`artifact=${unknown}&depth=0`, 'query.depth'],
      [`artifact=${unknown}&depth=two`, 'query.depth'],
      [`artifact=${unknown}&direction=sideways`, 'query.direction'],
      [`artifact=${unknown}&format=svg`, 'query.format'],
      [`artifact=${unknown}&run=${unknown}`, 'query.run'],
    ];
    for (const [query, field] of cases) {
      const error = await refusal(`/v1/lineage?${query}`, 400);
      expect(error.code, query).toBe('invalid_request');
      expect(error.message, query).toContain(`${field}:`);
    }
    const none = await refusal('/v1/lineage?direction=upstream', 400);
    expect(none.message).toContain('exactly one of artifact, modelVersion, run, deployment');
    expect((await refusal('/v1/artifacts/not-a-uuid', 400)).message).toContain('path.id:');
  });
});

describe('DrizzleLineageStore.graph', () => {
  it('cuts a graph at maxNodes, nearest first, and keeps only the edges between what it kept', async () => {
    const g = await platform.storage.lineage.graph({
      anchor: { kind: 'model_version', id: first.result.model.versionId },
      direction: 'upstream',
      depth: 10,
      maxNodes: 3,
    });
    expect(g?.truncated).toBe(true);
    expect(g?.nodes.map((n) => n.depth)).toEqual([0, 1, 1]);
    const kept = new Set(g?.nodes.map((n) => `${n.kind}:${n.id}`));
    expect(g?.edges.length).toBe(2);
    for (const edge of g?.edges ?? []) expect(kept.has(`${edge.from.kind}:${edge.from.id}`)).toBe(true);
  });
});
