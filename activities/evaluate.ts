/**
 * The pipeline's Evaluator stage (TFX's Evaluator): the candidate's metrics on the eval split, overall and per slice,
 * and the champion's on the same rows. Idempotent like every stage: its execution is keyed by workflow id and stage,
 * and a retry after completion returns the recorded result.
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { FittedTransform } from '../data/transform.js';
import { evaluateOnnxModel, type EvaluationReport } from '../models/evaluate.js';
import { ArtifactType, type JsonProperties } from '../schema/index.js';
import type { ArtifactRef } from '../storage/artifact-store.js';
import { activityLogger } from './activity-logger.js';
import type { ActivityDeps } from './deps.js';
import { completedStageResult, recordStage, type StageIdentity } from './stage-lineage.js';
import { withDataEngine } from './work-dir.js';

export interface EvaluateModelInput {
  readonly dataset: string;
  readonly modelName: string;
  readonly model: ArtifactRef;
  readonly eval: ArtifactRef;
  readonly transform: ArtifactRef;
  readonly slices: readonly string[];
  readonly threshold: number;
  readonly minSliceRows: number;
  /** Also evaluate the current champion on the same eval data, for the comparison. */
  readonly compareWithChampion: boolean;
}

export interface ChampionEvaluation {
  readonly versionId: string;
  readonly version: number;
  /** Absent when the champion could not be evaluated on this data (see `error`). */
  readonly metrics?: Record<string, number>;
  readonly report?: ArtifactRef;
  readonly error?: string;
}

export interface EvaluateModelResult {
  readonly report: ArtifactRef;
  readonly metrics: Record<string, number>;
  readonly rows: number;
  readonly slices: number;
  readonly champion?: ChampionEvaluation;
  readonly seconds: number;
}

/** The Evaluator stage's activity; served by the main task queue. */
export function createEvaluateActivities(deps: ActivityDeps) {
  const artifactCache = path.join(deps.scratchDir, 'artifacts');

  const putJson = (value: unknown) =>
    deps.artifacts.put(JSON.stringify(value, null, 2), { kind: 'evaluation.json', contentType: 'application/json' });

  return {
    /**
     * Evaluator: scores the exported ONNX model (the artifact that will serve) on the eval split, overall and per
     * slice, and the current champion on the same rows, so that the comparison is like for like.
     */
    async evaluateModel(input: EvaluateModelInput): Promise<EvaluateModelResult> {
      const identity: StageIdentity = { stage: 'evaluate', executionType: 'Evaluator', context: input.dataset };
      const done = await completedStageResult<EvaluateModelResult>(deps.metadata, identity.stage);
      if (done) return done;
      const log = activityLogger(deps.logger);
      const [evalPath, onnx, transformBytes] = await Promise.all([
        deps.artifacts.materialize(input.eval, artifactCache),
        deps.artifacts.get(input.model),
        deps.artifacts.get(input.transform),
      ]);
      const transform = JSON.parse(transformBytes.toString('utf8')) as FittedTransform;
      const options = { slices: input.slices, threshold: input.threshold, minSliceRows: input.minSliceRows };
      const champion = input.compareWithChampion ? await deps.registry.champion(input.modelName) : undefined;

      const { report, championEvaluation } = await withDataEngine(
        deps.scratchDir,
        identity.stage,
        evalPath,
        async (engine) => {
          const candidate = await evaluateOnnxModel({ onnx, evalPath, transform, engine, ...options });
          Context.current().heartbeat({ stage: identity.stage, phase: 'champion' });
          let championEvaluation: { report?: EvaluationReport; error?: string } | undefined;
          if (champion?.sha256 === input.model.sha256) {
            // The same bytes score the same rows identically: a deterministic retrain of unchanged data is common
            // (every rerun of the demo), and scoring it twice doubled the stage's time.
            championEvaluation = { report: candidate };
          } else if (champion) {
            try {
              const championOnnx = await deps.artifacts.get({ uri: champion.onnxUri, sha256: champion.sha256 });
              championEvaluation = {
                report: await evaluateOnnxModel({ onnx: championOnnx, evalPath, transform, engine, ...options }),
              };
            } catch (error) {
              // A champion that cannot score this data (its inputs differ from this pipeline's features) cannot be
              // compared: the validator then refuses to bless rather than deploy blind.
              championEvaluation = { error: error instanceof Error ? error.message : String(error) };
              log.warn({ err: error, championVersion: champion.version }, 'champion could not be evaluated');
            }
          }
          return { report: candidate, championEvaluation };
        },
      );

      const reportRef = await putJson(report);
      let championResult: ChampionEvaluation | undefined;
      if (champion && championEvaluation) {
        championResult = {
          versionId: champion.id,
          version: champion.version,
          ...(championEvaluation.report
            ? { metrics: championEvaluation.report.metrics, report: await putJson(championEvaluation.report) }
            : { error: championEvaluation.error ?? 'unknown error' }),
        };
      }
      const result: EvaluateModelResult = {
        report: reportRef,
        metrics: report.metrics,
        rows: report.rows,
        slices: report.slices.length,
        ...(championResult ? { champion: championResult } : {}),
        seconds: report.seconds,
      };
      await recordStage(deps.metadata, identity, {
        inputs: [
          { role: 'model', type: ArtifactType.Model, ref: input.model },
          { role: 'examples', type: ArtifactType.Dataset, ref: input.eval, properties: { split: 'eval' } },
        ],
        outputs: [
          {
            role: 'evaluation',
            type: ArtifactType.Evaluation,
            ref: reportRef,
            properties: { metrics: report.metrics as JsonProperties },
          },
        ],
        result,
      });
      log.info({ metrics: report.metrics, champion: championResult?.metrics }, 'model evaluated');
      return result;
    },
  };
}
