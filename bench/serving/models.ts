/** The models under load, produced by the demo pipeline itself (demo/flights.ts). */
import { performance } from 'node:perf_hooks';
import { DEMO_PIPELINE, runFlightsDemo, type DemoDeps, type DemoReport } from '../../demo/flights.js';
import type { ModelVersion } from '../../schema/registry.js';
import type { PlatformStorage } from '../../storage/open-storage.js';
import { check, formatMs } from '../harness.js';

/** The logistic regression's pipeline (and deployment): the demo's definition with another trainer. */
const LR_PIPELINE = `${DEMO_PIPELINE}-lr`;

/** The deployment (and model) names of the two models, as the predict route names them. */
export const DEPLOYMENTS = { lr: LR_PIPELINE, gbt: DEMO_PIPELINE } as const;

export interface Models {
  /** The demo's trees (seed 0) and a second version of them (seed 1): the two sides of the hot swap. */
  readonly gbt: readonly [ModelVersion, ModelVersion];
  readonly lr: ModelVersion;
  readonly reports: readonly DemoReport[];
}

/**
 * The demo's trees (v1), a second version of them (seed 1, compared on the AUC threshold only, so it is deployed too)
 * and a logistic regression (AUC threshold 0.6: a linear model does not reach the demo's 0.65), all deployed. Prints a
 * line per model; throws when one is not deployed or seed 1 trained the same bytes.
 */
export async function produceModels(deps: DemoDeps, registry: PlatformStorage['registry']): Promise<Models> {
  const step = async (label: string, run: () => Promise<DemoReport>) => {
    const began = performance.now();
    const report = await run();
    const { result } = report;
    console.log(
      `  ${label}: ${result.model.modelName} v${result.model.version} ${result.outcome}, ` +
        `AUC ${result.metrics.auc?.toFixed(4)} (${formatMs(performance.now() - began)})`,
    );
    check(result.outcome === 'deployed', `${label}: outcome ${result.outcome}, expected deployed`);
    return report;
  };
  const first = await step('demo (gradient-boosted trees)', () => runFlightsDemo(deps, { trigger: 'bench' }));
  const landed = first.landed;
  const second = await step('trees, seed 1 (the hot swap’s other version)', () =>
    runFlightsDemo(deps, {
      landed,
      trigger: 'bench',
      definition: {
        trainer: { kind: 'gradient_boosted_trees', params: { seed: 1 } },
        validation: { thresholds: [{ metric: 'auc', min: 0.65 }] },
      },
    }),
  );
  check(
    second.result.model.versionId !== first.result.model.versionId,
    'seed 1 trained the same bytes as seed 0: no second version to swap to',
  );
  const lr = await step('logistic regression', () =>
    runFlightsDemo(deps, {
      pipeline: LR_PIPELINE,
      landed,
      trigger: 'bench',
      definition: {
        trainer: { kind: 'logistic_regression', params: {} },
        validation: { thresholds: [{ metric: 'auc', min: 0.6 }] },
      },
    }),
  );
  const version = async (report: DemoReport) => {
    const found = await registry.getVersionById(report.result.model.versionId);
    check(found !== undefined, `version ${report.result.model.versionId} is not in the registry`);
    return found;
  };
  return {
    gbt: [await version(first), await version(second)],
    lr: await version(lr),
    reports: [first, second, lr],
  };
}
