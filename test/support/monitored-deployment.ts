/**
 * A deployment to monitor, without training anything: a saved definition, a run whose stages are recorded as
 * finished with the outputs a test gives (statistics, prepared splits, classes), a blessed version from that run,
 * deployed as champion; prediction logs and feedback inserted directly. For monitoring-window tests.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { ActivityDeps } from '../../activities/deps.js';
import { pipelineDefinitionSchema, type PipelineDefinitionInput } from '../../pipelines/definition.js';
import { random } from './random.js';

export { random };

export interface MonitoredVersion {
  readonly deployment: string;
  /** The model's name: the pipeline's. */
  readonly model: string;
  readonly versionId: string;
}

/**
 * Saves `definition`, records a run of it whose `stages` finished with the given outputs (stage name → outputs), and
 * deploys a blessed version of that run as `deployment`'s champion: the graph `onnx` when given (a stored artifact),
 * else an address where nothing is stored.
 */
export async function deployMonitoredVersion(
  deps: ActivityDeps,
  spec: {
    readonly deployment: string;
    readonly definition: PipelineDefinitionInput;
    readonly stages: Readonly<Record<string, Record<string, unknown>>>;
    readonly metrics?: Readonly<Record<string, number>>;
    readonly onnx?: { readonly uri: string; readonly sha256: string };
  },
): Promise<MonitoredVersion> {
  const definition = pipelineDefinitionSchema.parse(spec.definition);
  const { version: pipelineVersion } = await deps.pipelines.saveDefinition(definition, 'test');
  const workflowId = `monitoring-test-${definition.name}-${randomUUID().slice(0, 8)}`;
  const { run } = await deps.pipelines.createRun({
    pipelineVersionId: pipelineVersion.id,
    workflowId,
    trigger: 'manual',
  });
  for (const [stage, outputs] of Object.entries(spec.stages)) {
    await deps.pipelines.startStage(workflowId, stage, 1);
    await deps.pipelines.finishStage(workflowId, stage, { status: 'succeeded', outputs });
  }
  const sha256 = spec.onnx?.sha256 ?? randomUUID().replace(/-/g, '').padEnd(64, '0');
  const { version } = await deps.registry.registerVersion({
    modelName: definition.name,
    onnxUri: spec.onnx?.uri ?? `s3://${deps.artifacts.bucket}/artifacts/sha256/${sha256.slice(0, 2)}/${sha256}`,
    sha256,
    signature: { inputs: [], outputs: [] },
    metrics: { ...(spec.metrics ?? { auc: 0.8, accuracy: 0.75 }) },
    params: {},
    blessing: { blessed: true, reason: 'test', evaluatedAt: new Date().toISOString() },
    sourceRunId: run.id,
    actor: 'test',
    reason: 'monitoring test',
  });
  await deps.deployments.deploy({
    deploymentName: spec.deployment,
    modelName: definition.name,
    versionId: version.id,
    actor: 'test',
    reason: 'test',
  });
  return { deployment: spec.deployment, model: definition.name, versionId: version.id };
}

/** One logged binary prediction: P(yes) = `p`, served label `yes` from 0.5 on. */
export interface LoggedPrediction {
  readonly requestId: string;
  readonly loggedAt: Date;
  readonly features: Record<string, unknown>;
  readonly p: number;
}

/** Inserts champion predictions of `target` (classes `no`, `yes`). */
export async function insertPredictionLogs(
  pool: pg.Pool,
  target: MonitoredVersion,
  rows: readonly LoggedPrediction[],
): Promise<void> {
  await pool.query(
    `insert into prediction_logs
       (request_id, logged_at, deployment, model, version_id, version, role, features, outputs, latency_ms)
     select r, t, $5, $6, $7, 1, 'champion', f, o, 1
     from unnest($1::text[], $2::timestamptz[], $3::json[], $4::jsonb[]) as u(r, t, f, o)`,
    [
      rows.map((r) => r.requestId),
      rows.map((r) => r.loggedAt),
      rows.map((r) => JSON.stringify(r.features)),
      rows.map((r) => JSON.stringify({ label: r.p >= 0.5 ? 'yes' : 'no', probabilities: [1 - r.p, r.p] })),
      target.deployment,
      target.model,
      target.versionId,
    ],
  );
}

/** Records feedback (a text label per request). */
export async function insertFeedback(
  pool: pg.Pool,
  labels: readonly { readonly requestId: string; readonly label: string }[],
): Promise<void> {
  await pool.query(
    `insert into prediction_feedback (request_id, label, actor)
     select r, to_jsonb(l), 'test' from unnest($1::text[], $2::text[]) as u(r, l)`,
    [labels.map((f) => f.requestId), labels.map((f) => f.label)],
  );
}
