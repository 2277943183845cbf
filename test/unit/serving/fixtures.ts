/** An in-memory registry and fake sessions for the serving unit tests. */
import { randomUUID } from 'node:crypto';
import * as ort from 'onnxruntime-node';
import { createLogger } from '../../../core/logger.js';
import type { ModelSignature, ModelVersion } from '../../../schema/registry.js';
import { LoadedModel, type ScoringSession } from '../../../serving/loaded-model.js';
import type { ModelLoader } from '../../../serving/load-model.js';
import type { ServingMetrics } from '../../../serving/metrics.js';
import type { PoolDeployments, PoolRegistry } from '../../../serving/model-pool.js';
import { compileSignature } from '../../../serving/signature.js';
import type { DeploymentSummary, RevisionSummary } from '../../../storage/deployment-store.js';

export const silentLogger = createLogger({ level: 'silent' });

export const SIGNATURE: ModelSignature = {
  inputs: [
    { name: 'x', type: 'double', shape: [null, 1] },
    { name: 'kind', type: 'string', shape: [null, 1] },
  ],
  outputs: [
    { name: 'label', type: 'int64', shape: [null] },
    { name: 'probabilities', type: 'float', shape: [null, 2] },
  ],
};

interface FakeModel {
  id: string;
  versions: ModelVersion[];
  aliases: Map<string, string>;
}

interface FakeDeployment {
  id: string;
  modelName: string;
  active: RevisionSummary[];
}

/**
 * Just enough of RegistryStore and DeploymentStore for the pool (hand it as both `registry` and `deployments`), with
 * `deploy` moving the champion like the real one.
 */
export class FakeRegistry implements PoolRegistry, PoolDeployments {
  readonly models = new Map<string, FakeModel>();
  readonly deployments = new Map<string, FakeDeployment>();
  /** Calls per method, to check what the hot path does not ask. */
  readonly calls: Record<string, number> = {};

  #count(method: string): void {
    this.calls[method] = (this.calls[method] ?? 0) + 1;
  }

  addVersion(modelName: string, signature: ModelSignature = SIGNATURE): ModelVersion {
    let model = this.models.get(modelName);
    if (!model) {
      model = { id: randomUUID(), versions: [], aliases: new Map() };
      this.models.set(modelName, model);
    }
    const version: ModelVersion = {
      id: randomUUID(),
      modelId: model.id,
      version: model.versions.length + 1,
      artifactId: null,
      onnxUri: `s3://bucket/artifacts/sha256/${randomUUID()}`,
      sha256: randomUUID().replace(/-/g, ''),
      signature,
      metrics: {},
      params: {},
      blessing: null,
      status: 'blessed',
      codeVersion: null,
      sourceRunId: null,
      description: null,
      tags: {},
      createdAt: new Date(),
    };
    model.versions.push(version);
    return version;
  }

  setAlias(modelName: string, alias: string, versionId: string): void {
    this.models.get(modelName)!.aliases.set(alias, versionId);
  }

  deploy(deployment: string, modelName: string, versionId: string, extra: Partial<RevisionSummary>[] = []): void {
    let d = this.deployments.get(deployment);
    if (!d) {
      d = { id: randomUUID(), modelName, active: [] };
      this.deployments.set(deployment, d);
    }
    const revision = (id: string, role: RevisionSummary['role'], trafficPercent: number): RevisionSummary => ({
      id: randomUUID(),
      deploymentId: d.id,
      versionId: id,
      version: this.#versionById(id)!.version,
      role,
      trafficPercent,
      reason: 'test',
      actor: 'test',
      startedAt: new Date(),
      endedAt: null,
    });
    d.active = [
      revision(versionId, 'champion', 100),
      ...extra.map((e) => ({ ...revision(e.versionId!, e.role ?? 'challenger', e.trafficPercent ?? 0), ...e })),
    ];
    this.setAlias(modelName, 'champion', versionId);
  }

  #versionById(id: string): ModelVersion | undefined {
    for (const model of this.models.values()) {
      const found = model.versions.find((v) => v.id === id);
      if (found) return found;
    }
    return undefined;
  }

  #summary(name: string, d: FakeDeployment): DeploymentSummary {
    return {
      id: d.id,
      name,
      modelId: this.models.get(d.modelName)!.id,
      strategy: 'replace',
      config: {},
      createdAt: new Date(),
      updatedAt: new Date(),
      modelName: d.modelName,
    };
  }

  listDeployments(): Promise<DeploymentSummary[]> {
    this.#count('listDeployments');
    return Promise.resolve([...this.deployments].map(([name, d]) => this.#summary(name, d)));
  }

  getDeployment(name: string): Promise<DeploymentSummary | undefined> {
    this.#count('getDeployment');
    const d = this.deployments.get(name);
    return Promise.resolve(d ? this.#summary(name, d) : undefined);
  }

  activeRevisions(name: string): Promise<RevisionSummary[]> {
    this.#count('activeRevisions');
    return Promise.resolve([...(this.deployments.get(name)?.active ?? [])]);
  }

  getVersion(modelName: string, ref: number | string): Promise<ModelVersion | undefined> {
    this.#count('getVersion');
    const model = this.models.get(modelName);
    if (!model) return Promise.resolve(undefined);
    if (typeof ref === 'number') return Promise.resolve(model.versions.find((v) => v.version === ref));
    const id = model.aliases.get(ref);
    return Promise.resolve(id ? model.versions.find((v) => v.id === id) : undefined);
  }

  getVersionById(id: string): Promise<ModelVersion | undefined> {
    this.#count('getVersionById');
    return Promise.resolve(this.#versionById(id));
  }

  getModel(name: string): ReturnType<PoolRegistry['getModel']> {
    this.#count('getModel');
    const model = this.models.get(name);
    return Promise.resolve(
      model
        ? { id: model.id, name, description: null, tags: {}, createdAt: new Date(), updatedAt: new Date() }
        : undefined,
    );
  }
}

/**
 * A session whose "probability" of class 1 is version / 10, so a response tells which version answered. `gate`,
 * when set, holds every run until it resolves (to keep requests in flight).
 */
export class FakeSession implements ScoringSession {
  released = false;
  runs = 0;
  gate: Promise<void> | undefined;

  constructor(readonly version: number) {}

  async run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    if (this.released) throw new Error('run on a released session');
    this.runs++;
    if (this.gate) await this.gate;
    if (this.released) throw new Error('session released during a run');
    const rows = feeds.x!.dims[0]!;
    const p = this.version / 10;
    const probabilities = new Float32Array(rows * 2);
    for (let i = 0; i < rows; i++) {
      probabilities[2 * i] = 1 - p;
      probabilities[2 * i + 1] = p;
    }
    return {
      label: new ort.Tensor('int64', new BigInt64Array(rows).fill(p > 0.5 ? 1n : 0n), [rows]),
      probabilities: new ort.Tensor('float32', probabilities, [rows, 2]),
    };
  }

  release(): Promise<void> {
    this.released = true;
    return Promise.resolve();
  }
}

/** A loader of FakeSessions that can be told to fail for some version ids, and records what it loaded. */
export function fakeLoader(metrics: ServingMetrics) {
  const sessions = new Map<string, FakeSession>();
  const failing = new Map<string, Error>();
  let loads = 0;
  const load: ModelLoader = (modelName, version) => {
    loads++;
    const failure = failing.get(version.id);
    if (failure) return Promise.reject(failure);
    const session = new FakeSession(version.version);
    sessions.set(version.id, session);
    return Promise.resolve(
      new LoadedModel(
        { name: modelName, version: version.version, versionId: version.id, sha256: version.sha256 },
        compileSignature(version.signature),
        session,
        metrics.forModel(modelName, String(version.version)),
        ['no', 'yes'],
      ),
    );
  };
  return {
    load,
    sessions,
    failing,
    get loads() {
      return loads;
    },
  };
}
