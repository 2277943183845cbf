/**
 * The pipeline's model validation stage (TFX's ModelValidator and InfraValidator in one): the blessing, with its
 * reasons. Idempotent like every stage: its execution is keyed by workflow id and stage, and a retry after completion
 * returns the recorded result.
 */
import path from 'node:path';
import { infraValidate, type InfraValidationResult } from '../models/infra-validation.js';
import {
  judgeModel,
  type ChampionComparison,
  type Threshold,
  type ValidationCheck,
} from '../models/model-validation.js';
import { ArtifactType, type ModelBlessing } from '../schema/index.js';
import type { ArtifactRef } from '../storage/artifact-store.js';
import { activityLogger } from './activity-logger.js';
import type { ActivityDeps } from './deps.js';
import type { ChampionEvaluation } from './evaluate.js';
import { completedStageResult, recordStage, type StageIdentity } from './stage-lineage.js';
import { withDataEngine } from './work-dir.js';

export interface ValidateModelInput {
  readonly dataset: string;
  readonly model: ArtifactRef;
  readonly eval: ArtifactRef;
  readonly metrics: Record<string, number>;
  readonly thresholds: readonly Threshold[];
  readonly comparison?: ChampionComparison;
  readonly champion?: ChampionEvaluation;
  readonly infra: { readonly maxLatencyMs: number; readonly sampleRows: number };
}

export interface ValidateModelResult {
  readonly blessing: ModelBlessing;
  readonly checks: readonly ValidationCheck[];
  readonly infra: InfraValidationResult;
  readonly record: ArtifactRef;
}

/** The model validation stage's activity; served by the main task queue. */
export function createModelValidationActivities(deps: ActivityDeps) {
  const artifactCache = path.join(deps.scratchDir, 'artifacts');

  return {
    /**
     * Model validation: absolute thresholds, the comparison with the champion, and infra validation (the model loads
     * in a fresh session and answers a sample request in time). The outcome is a blessing with its reasons; an
     * unblessed model is not a failure of the run, it is a verdict.
     */
    async validateModel(input: ValidateModelInput): Promise<ValidateModelResult> {
      const identity: StageIdentity = {
        stage: 'validate_model',
        executionType: 'ModelValidator',
        context: input.dataset,
      };
      const done = await completedStageResult<ValidateModelResult>(deps.metadata, identity.stage);
      if (done) return done;
      const [evalPath, onnx] = await Promise.all([
        deps.artifacts.materialize(input.eval, artifactCache),
        deps.artifacts.get(input.model),
      ]);
      const infra = await withDataEngine(deps.scratchDir, identity.stage, evalPath, (engine) =>
        infraValidate({ onnx, evalPath, engine, ...input.infra }),
      );
      const champion = input.champion;
      const judgement = judgeModel({
        candidate: input.metrics,
        thresholds: input.thresholds,
        ...(input.comparison ? { comparison: input.comparison } : {}),
        ...(champion?.metrics ? { champion: { version: champion.version, metrics: champion.metrics } } : {}),
        infra,
      });
      const checks: ValidationCheck[] = [...judgement.checks];
      if (input.comparison && champion && !champion.metrics) {
        checks.push({
          name: 'champion',
          passed: false,
          detail: `champion v${champion.version} could not be evaluated on this data: ${champion.error ?? 'unknown'}`,
        });
      }
      const failed = checks.filter((c) => !c.passed);
      const blessing: ModelBlessing = {
        blessed: failed.length === 0,
        reason: failed.length === 0 ? judgement.reason : failed.map((c) => c.detail).join('; '),
        ...(champion ? { baselineVersionId: champion.versionId } : {}),
        metrics: input.metrics,
        thresholds: Object.fromEntries(
          input.thresholds.flatMap((t) => [
            ...(t.min !== undefined ? [[`${t.metric}.min`, t.min] as const] : []),
            ...(t.max !== undefined ? [[`${t.metric}.max`, t.max] as const] : []),
          ]),
        ),
        evaluatedAt: new Date().toISOString(),
      };
      const record = await deps.artifacts.put(JSON.stringify({ blessing, checks, infra }, null, 2), {
        kind: 'blessing.json',
        contentType: 'application/json',
      });
      const result: ValidateModelResult = { blessing, checks, infra, record };
      await recordStage(deps.metadata, identity, {
        inputs: [{ role: 'model', type: ArtifactType.Model, ref: input.model }],
        outputs: [
          {
            role: 'blessing',
            type: ArtifactType.Report,
            ref: record,
            properties: { blessed: blessing.blessed, reason: blessing.reason },
          },
        ],
        result,
      });
      activityLogger(deps.logger).info({ blessed: blessing.blessed, reason: blessing.reason }, 'model validated');
      return result;
    },
  };
}
