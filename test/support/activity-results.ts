/**
 * Small, valid results of the platform's activities, for workflow-logic tests whose activities are mocked. Each is
 * typed as the real activity returns it; artifact references are distinct per kind and call, so a test can tell
 * which stage's output reached which input.
 */
import { randomUUID } from 'node:crypto';
import type {
  CanaryComparison,
  DeployModelResult,
  EvaluateModelResult,
  ExtractDataResult,
  ModelBlessing,
  PrepareDataResult,
  RegisterModelResult,
  StartCanaryResult,
  StatisticsResult,
  TrafficState,
  TrainModelResult,
  ValidateDataResult,
  ValidateModelResult,
} from '../../activities/index.js';
import type { ArtifactRef } from '../../storage/artifact-store.js';

/** A reference to an artifact that exists nowhere: workflows pass references on and never read them. */
export function fakeArtifact(kind: string): ArtifactRef {
  const sha256 = randomUUID().replaceAll('-', '').padEnd(64, '0');
  return { uri: `s3://workflow-test/${kind}/${sha256}`, sha256, bytes: 100, contentType: 'application/json', kind };
}

export function extractResult(): ExtractDataResult {
  return {
    snapshot: fakeArtifact('dataset.parquet'),
    rowCount: 400,
    columns: [{ name: 'x', type: 'DOUBLE' }],
    fingerprint: 'f'.repeat(64),
    reused: false,
  };
}

export function statisticsResult(): StatisticsResult {
  return { statistics: fakeArtifact('statistics.json'), rowCount: 400 };
}

export function validateDataResult(): ValidateDataResult {
  return {
    schema: fakeArtifact('schema.json'),
    schemaVersion: 1,
    schemaInferred: true,
    report: fakeArtifact('anomalies.json'),
    anomalies: 0,
  };
}

export function prepareResult(): PrepareDataResult {
  return {
    train: fakeArtifact('train.parquet'),
    eval: fakeArtifact('eval.parquet'),
    transform: fakeArtifact('transform.json'),
    trainRows: 280,
    evalRows: 120,
    droppedNullLabels: 0,
    classes: [0, 1],
  };
}

export function trainResult(): TrainModelResult {
  return {
    model: fakeArtifact('model.onnx'),
    signature: { inputs: [{ name: 'x', type: 'double', shape: [null, 1] }], outputs: [] },
    trainer: 'logistic_regression',
    params: {},
    iterations: 10,
    curve: [],
    trainSeconds: 0.1,
    loadSeconds: 0.1,
    resumedFromIteration: null,
    attempt: 1,
    parity: { maxAbsDiff: 0, rows: 120 },
  };
}

export function evaluateResult(metrics: Record<string, number> = { auc: 0.9 }): EvaluateModelResult {
  return { report: fakeArtifact('evaluation.json'), metrics, rows: 120, slices: 0, seconds: 0.1 };
}

export function blessing(blessed: boolean, reason = blessed ? 'all checks passed' : 'auc 0.4 < 0.55'): ModelBlessing {
  return { blessed, reason, evaluatedAt: new Date().toISOString() };
}

export function validateModelResult(blessed: boolean): ValidateModelResult {
  return {
    blessing: blessing(blessed),
    checks: [],
    infra: { passed: true, loadMs: 1, latencyMs: 1, rows: 100, maxLatencyMs: 2000 },
    record: fakeArtifact('blessing.json'),
  };
}

export function registerResult(modelName: string, version = 1): RegisterModelResult {
  return { modelName, versionId: randomUUID(), version, created: true, status: 'registered' };
}

export function deployResult(deploymentName: string, versionId: string, changed = true): DeployModelResult {
  return { deploymentName, versionId, revisionId: randomUUID(), previousVersionId: null, changed };
}

/** What serves after a traffic change: the champion, and the challenger at `challengerPercent` when above 0. */
export function trafficState(
  deploymentName: string,
  champion: string,
  challenger: string,
  challengerPercent: number,
): TrafficState {
  const startedAt = new Date().toISOString();
  return {
    deploymentName,
    modelName: deploymentName,
    strategy: challengerPercent > 0 ? 'canary' : 'single',
    changed: true,
    active: [
      {
        revisionId: randomUUID(),
        versionId: champion,
        role: 'champion',
        trafficPercent: 100 - challengerPercent,
        startedAt,
      },
      ...(challengerPercent > 0
        ? [
            {
              revisionId: randomUUID(),
              versionId: challenger,
              role: 'challenger',
              trafficPercent: challengerPercent,
              startedAt,
            },
          ]
        : []),
    ],
  };
}

export function startCanaryResult(
  deploymentName: string,
  champion: string,
  challenger: string,
  trafficPercent: number,
): StartCanaryResult {
  return {
    ...trafficState(deploymentName, champion, challenger, trafficPercent),
    championVersionId: champion,
    challengerVersionId: challenger,
    trafficPercent,
    since: new Date().toISOString(),
  };
}

/** A comparison of the two versions' live traffic with the given verdict. */
export function canaryComparison(
  verdict: CanaryComparison['verdict'],
  summary = `verdict ${verdict}`,
): CanaryComparison {
  const traffic = (versionId: string) => ({
    versionId,
    requests: 100,
    rows: 100,
    errors: 0,
    latencyP50Ms: 1,
    latencyP99Ms: 2,
  });
  return {
    verdict,
    errorRateIncrease: 0,
    latencyP99Ratio: 1,
    predictionDivergence: 0,
    labelDivergence: 0,
    scoreDivergence: null,
    checks: [],
    summary,
    champion: traffic('champion'),
    challenger: traffic('challenger'),
    since: new Date().toISOString(),
    comparedAt: new Date().toISOString(),
  };
}
