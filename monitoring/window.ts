/**
 * One monitoring window of a deployment, end to end: what serves (the champion's version, its training baseline,
 * evaluation metrics and monitoring settings), the window's logged predictions with their feedback, the distances,
 * live and estimated metrics, the report artifact and the window's row. The body of the `computeMonitoringWindow`
 * activity (activities/monitoring-window.ts).
 */
import { drizzle } from 'drizzle-orm/node-postgres';
import type pg from 'pg';
import type { ActivityDeps } from '../activities/deps.js';
import { DomainError } from '../core/errors.js';
import type { ColumnStatistics, DatasetStatistics } from '../data/types.js';
import type { FittedTransform } from '../data/transform.js';
import { pipelineDefinitionSchema, type PipelineDefinition } from '../pipelines/definition.js';
import * as schema from '../schema/index.js';
import type { ModelVersion } from '../schema/index.js';
import { ArtifactNotFoundError, type ArtifactRef } from '../storage/artifact-store.js';
import { MonitoringStore } from '../storage/monitoring-store.js';
import { baselineEdges } from './distances.js';
import { estimatePerformance, windowCalibration, type CalibrationReport } from './eval-calibration.js';
import { labelledMetrics } from './labelled-metrics.js';
import type { FeatureMonitoring, MonitorWindowInput, WindowSummary } from './types.js';
import {
  analyzeFeature,
  distanceBreaches,
  performanceBreaches,
  type FeatureThresholds,
  type ReportFeature,
} from './window-analysis.js';
import { countExportedRows } from './window-exported.js';
import { scanWindow, type FeaturePlan, type ScanPlan, type WindowScan } from './window-scan.js';
import {
  PREPARED_LABEL_COLUMN,
  trainingBaseline,
  type TrainingBaseline,
  type TrainingBaselineRef,
} from './training-baseline.js';

/** The monitoring section of a definition, defaults filled in. */
export type MonitoringSettings = NonNullable<PipelineDefinition['monitoring']>;

const monitoringSettingsSchema = pipelineDefinitionSchema.shape.monitoring.unwrap();

/** The settings of a pipeline without a `monitoring` section (or a version trained outside a pipeline). */
export const DEFAULT_MONITORING: MonitoringSettings = monitoringSettingsSchema.parse({});

/** Thrown when the deployment to monitor does not exist or serves no champion. */
export class MonitoringTargetNotFoundError extends DomainError {
  override readonly name = 'MonitoringTargetNotFoundError';
  constructor(message: string) {
    super('not_found', message);
  }
}

/** Thrown for a window that cannot be computed as asked (an unparsable end, a non-positive length). */
export class InvalidWindowError extends DomainError {
  override readonly name = 'InvalidWindowError';
  constructor(message: string) {
    super('invalid', message);
  }
}

/** The report artifact of a window (JSON). The next window reads `features[].counts` or `categories` for drift. */
export interface WindowReport {
  readonly version: 1;
  readonly summary: Omit<WindowSummary, 'windowId' | 'reportUri'>;
  /**
   * What skew was measured against: the training snapshot's statistics (`statistics`, bare source columns) and the
   * statistics of the prepared train split (`features`, every feature and the label as the model saw them), which
   * the next window of the same version reads instead of computing them again.
   */
  readonly baseline?: { readonly statistics?: string; readonly features?: TrainingBaselineRef };
  readonly previousWindowId?: string;
  readonly thresholds: MonitoringSettings['thresholds'];
  readonly minRows: number;
  /** Rows with a value in each feature and the bins or values counted; see ReportFeature. */
  readonly features: readonly ReportFeature[];
  readonly prediction?: ReportFeature;
  /** Classifiers: the classes, in the order of the logged probabilities. */
  readonly classes?: readonly string[];
  /** Feedback rows whose label is no class of the model (or no number, for regression): left out of live metrics. */
  readonly unmatchedLabels: number;
  /** The estimate over the labelled rows only, to compare with the live metrics on the same rows. */
  readonly estimatedOnLabelled?: Readonly<Record<string, number>>;
  /** Classifiers: whether the estimates read probabilities calibrated on the eval split, and how well that did. */
  readonly calibration?: CalibrationReport;
  readonly notes: readonly string[];
}

/** What serves, and what it is measured against. */
interface Target {
  readonly deployment: string;
  readonly model: string;
  readonly version: ModelVersion;
  readonly definition?: PipelineDefinition;
  readonly settings: MonitoringSettings;
  readonly statistics?: DatasetStatistics;
  readonly statisticsUri?: string;
  readonly classes?: readonly string[];
  readonly transform?: FittedTransform;
  /** The prepared train split (Transform's `train` output): the preferred skew baseline. */
  readonly train?: ArtifactRef;
  /** The prepared eval split: what the estimates' calibration is fitted on. */
  readonly eval?: ArtifactRef;
}

/** A store on the activities' pool (ActivityDeps carries the pool, not a Drizzle handle). */
export function monitoringStoreOn(pool: pg.Pool): MonitoringStore {
  return new MonitoringStore(drizzle(pool, { schema }));
}

/** Outputs of a stage row, loosely typed (they are whatever the stage returned). */
function stageOutputs(stages: readonly schema.PipelineRunStage[], stage: string): Record<string, unknown> | undefined {
  const row = stages.find((s) => s.stage === stage && (s.status === 'succeeded' || s.status === 'cached'));
  return row?.outputs as Record<string, unknown> | undefined;
}

function artifactRefOf(value: unknown): ArtifactRef | undefined {
  const ref = value as Partial<ArtifactRef> | undefined;
  return typeof ref?.uri === 'string' && typeof ref.sha256 === 'string' ? (ref as ArtifactRef) : undefined;
}

async function readJson<T>(deps: ActivityDeps, ref: { uri: string; sha256?: string }): Promise<T> {
  return JSON.parse((await deps.artifacts.get(ref)).toString('utf8')) as T;
}

async function resolveTarget(deps: ActivityDeps, deploymentName: string, notes: string[]): Promise<Target> {
  const deployment = await deps.deployments.getDeployment(deploymentName);
  if (!deployment) throw new MonitoringTargetNotFoundError(`deployment ${deploymentName} does not exist`);
  const champion = (await deps.deployments.activeRevisions(deploymentName)).find((r) => r.role === 'champion');
  if (!champion) throw new MonitoringTargetNotFoundError(`deployment ${deploymentName} serves no champion`);
  const version = await deps.registry.getVersionById(champion.versionId);
  if (!version) throw new MonitoringTargetNotFoundError(`model version ${champion.versionId} does not exist`);

  const run = version.sourceRunId ? await deps.pipelines.getRun(version.sourceRunId) : undefined;
  if (!run) {
    notes.push('the version has no pipeline run: no baseline, default monitoring settings');
    return { deployment: deploymentName, model: deployment.modelName, version, settings: DEFAULT_MONITORING };
  }
  const pipelineVersion = await deps.pipelines.getVersionById(run.pipelineVersionId);
  const parsed = pipelineVersion ? pipelineDefinitionSchema.safeParse(pipelineVersion.definition) : undefined;
  const definition = parsed?.success ? parsed.data : undefined;
  if (pipelineVersion && !definition) notes.push('the pipeline definition no longer parses: default settings');
  const settings = definition?.monitoring ?? DEFAULT_MONITORING;

  const statisticsRef = artifactRefOf(stageOutputs(run.stages, 'statistics')?.statistics);
  const prepared = stageOutputs(run.stages, 'prepare');
  const transformRef = artifactRefOf(prepared?.transform);
  const train = artifactRefOf(prepared?.train);
  const evalSplit = artifactRefOf(prepared?.eval);
  const [statistics, transform] = await Promise.all([
    statisticsRef ? readJson<DatasetStatistics>(deps, statisticsRef) : undefined,
    transformRef ? readJson<FittedTransform>(deps, transformRef) : undefined,
  ]);
  if (!statistics && !train) notes.push('the training run recorded no statistics: skew is not measured');
  const classes = Array.isArray(prepared?.classes) ? (prepared.classes as unknown[]).map(String) : undefined;
  return {
    deployment: deploymentName,
    model: deployment.modelName,
    version,
    ...(definition ? { definition } : {}),
    settings,
    ...(statistics ? { statistics } : {}),
    ...(statisticsRef ? { statisticsUri: statisticsRef.uri } : {}),
    ...(classes ? { classes } : {}),
    ...(transform ? { transform } : {}),
    ...(train ? { train } : {}),
    ...(evalSplit ? { eval: evalSplit } : {}),
  };
}

const BARE_IDENTIFIER = /^\s*"?([A-Za-z_][A-Za-z0-9_]*)"?\s*$/;

/** The statistics column an expression reads when it is a bare column name; undefined for anything computed. */
function columnOf(statistics: DatasetStatistics | undefined, expression: string): ColumnStatistics | undefined {
  const name = BARE_IDENTIFIER.exec(expression)?.[1]?.toLowerCase();
  if (!name || !statistics) return undefined;
  return statistics.columns.find((c) => c.name.toLowerCase() === name);
}

interface MonitoredFeature {
  readonly plan: FeaturePlan;
  readonly baseline?: ColumnStatistics;
}

/**
 * A feature's (or the label's) skew baseline: its column in the prepared train split's statistics, what the model
 * saw; else, for a bare source column, that column in the training snapshot's statistics.
 */
function baselineOf(
  target: Target,
  training: TrainingBaseline | undefined,
  column: string,
  expression: string,
): ColumnStatistics | undefined {
  return training?.statistics.columns.find((c) => c.name === column) ?? columnOf(target.statistics, expression);
}

/** The features to watch, their kinds and baselines: from the definition, else from one logged instance. */
async function monitoredFeatures(
  target: Target,
  training: TrainingBaseline | undefined,
  sample: () => Promise<Record<string, unknown> | undefined>,
  notes: string[],
): Promise<MonitoredFeature[]> {
  const definition = target.definition;
  if (!definition) {
    const instance = (await sample()) ?? {};
    return Object.entries(instance).map(([name, value]) => ({
      plan: typeof value === 'number' ? { name, kind: 'numeric' } : { name, kind: 'categorical' },
    }));
  }
  return definition.features.map((feature) => {
    const baseline = baselineOf(target, training, feature.name, feature.expression);
    const fitted = target.transform?.features.find((f) => f.name === feature.name)?.kind;
    const kind =
      fitted ??
      feature.kind ??
      (baseline ? (baseline.kind === 'numeric' ? 'numeric' : 'categorical') : ('numeric' as const));
    if ((target.statistics || training) && !baseline)
      notes.push(`${feature.name}: neither the train split nor the snapshot has it (no skew)`);
    if (kind === 'numeric') {
      const edges = baseline ? baselineEdges(baseline) : undefined;
      return { plan: { name: feature.name, kind, ...(edges ? { edges } : {}) }, ...(baseline ? { baseline } : {}) };
    }
    return { plan: { name: feature.name, kind }, ...(baseline ? { baseline } : {}) };
  });
}

/**
 * The statistics of the version's prepared train split: the previous window's (same version, same split) when its
 * report names them, else computed now. Undefined without a train split, or when it no longer exists (noted).
 */
async function trainingBaselineOf(
  deps: ActivityDeps,
  target: Target,
  previous: WindowReport | undefined,
  notes: string[],
): Promise<TrainingBaseline | undefined> {
  if (!target.train || !target.definition) return undefined;
  const cached = previous?.summary.versionId === target.version.id ? previous.baseline?.features : undefined;
  // A classifier's prepared label is the class index; served labels are the classes (the index without them).
  const classes = target.definition.label.task === 'regression' ? undefined : (target.classes ?? []);
  try {
    const baseline = await trainingBaseline(deps, target.train, classes, cached);
    if (!baseline.reused) notes.push(`computed the train split's statistics: ${baseline.ref.uri}`);
    return baseline;
  } catch (error) {
    if (!(error instanceof ArtifactNotFoundError)) throw error;
    notes.push(`the train split ${target.train.uri} no longer exists: skew against the snapshot's columns only`);
    return undefined;
  }
}

function thresholdsOf(settings: MonitoringSettings, feature: string): FeatureThresholds {
  const own = settings.thresholds.features[feature];
  return { skew: own?.skew ?? settings.thresholds.skew, drift: own?.drift ?? settings.thresholds.drift };
}

/** The classes by probability index: the training run's, else as the served labels show them. */
function classesOf(target: Target, scan: WindowScan): string[] {
  if (target.classes && target.classes.length >= scan.classCount) return [...target.classes];
  return Array.from({ length: scan.classCount }, (_, i) => scan.servedClasses.get(i) ?? String(i));
}

/**
 * Computes one window of a deployment and stores it: reads the champion's logged predictions in
 * [windowEnd − windowSeconds, windowEnd) with their feedback, measures skew and drift per feature and for the
 * predictions, live metrics (labelled rows) and estimated ones (classifiers, from the probabilities alone, calibrated
 * on the version's eval split when it has one: see eval-calibration.ts), writes the report artifact and upserts the
 * window's row.
 *
 * Idempotent and retriable: the same span of the same deployment always maps to the same row (updated in place,
 * same id; the report is content-addressed), so a retry or a recomputation after late feedback writes no second row.
 *
 * @throws MonitoringTargetNotFoundError when the deployment does not exist or serves no champion.
 */
export async function computeMonitoringWindow(deps: ActivityDeps, input: MonitorWindowInput): Promise<WindowSummary> {
  const end = new Date(input.windowEnd);
  if (Number.isNaN(end.getTime())) throw new InvalidWindowError(`windowEnd: not a timestamp: ${input.windowEnd}`);
  if (!(Number.isFinite(input.windowSeconds) && input.windowSeconds > 0))
    throw new InvalidWindowError(`windowSeconds: must be positive, got ${input.windowSeconds}`);
  const start = new Date(end.getTime() - input.windowSeconds * 1000);
  const notes: string[] = [];
  const target = await resolveTarget(deps, input.deployment, notes);
  const { settings, version } = target;
  const store = monitoringStoreOn(deps.pgPool);

  const query = { deployment: input.deployment, versionId: version.id, start, end };
  const previousRow = await store.previousWindow(input.deployment, start);
  const previous = previousRow?.reportUri
    ? await readJson<WindowReport>(deps, {
        uri: previousRow.reportUri,
        ...(previousRow.reportSha256 ? { sha256: previousRow.reportSha256 } : {}),
      })
    : undefined;
  if (!previous) notes.push('no previous window: drift is not measured');
  const previousFeature = new Map((previous?.features ?? []).map((f) => [f.feature, f]));

  const training = await trainingBaselineOf(deps, target, previous, notes);
  const features = await monitoredFeatures(
    target,
    training,
    async () => {
      const { rows } = await deps.pgPool.query<{ features: Record<string, unknown> }>(
        `select features from prediction_logs where deployment = $1 and version_id = $2 and role = 'champion'
           and error is null and logged_at >= $3 and logged_at < $4 limit 1`,
        [query.deployment, query.versionId, start, end],
      );
      return rows[0]?.features;
    },
    notes,
  );
  const task = target.definition?.label.task;
  const labelColumn = target.definition
    ? baselineOf(target, training, PREPARED_LABEL_COLUMN, target.definition.label.expression)
    : undefined;
  const predictionEdges = task === 'regression' && labelColumn ? baselineEdges(labelColumn) : undefined;
  const plan: ScanPlan = {
    features: features.map((f) => f.plan),
    ...(task ? { task } : {}),
    ...(predictionEdges ? { predictionEdges } : {}),
    keepProbabilities: task !== 'regression',
  };

  const scan = await scanWindow(deps.pgPool, query, plan);
  await countExportedRows(
    {
      pool: deps.pgPool,
      scratchDir: deps.scratchDir,
      ...(deps.predictionLogWarehouse ? { warehouse: deps.predictionLogWarehouse } : {}),
    },
    scan,
    plan,
    query,
  );
  if (scan.exportedParts.length > 0)
    notes.push(
      `${scan.exportedRows} rows read from the serving-log warehouse (exported days: ${[
        ...new Set(scan.exportedParts.map((p) => p.day)),
      ].join(', ')})`,
    );
  const belowMinRows = scan.rows < settings.minRows;

  const analyzed = scan.features.map((counts, i) =>
    analyzeFeature({
      feature: counts.plan.name,
      kind: counts.plan.kind,
      ...(counts.numeric ? { numeric: counts.numeric } : {}),
      ...(counts.categorical ? { categorical: counts.categorical } : {}),
      missingOnly: counts.missingOnly,
      rows: scan.rows,
      ...(features[i]!.baseline ? { baseline: features[i]!.baseline } : {}),
      ...(previousFeature.has(counts.plan.name) ? { previous: previousFeature.get(counts.plan.name)! } : {}),
      thresholds: thresholdsOf(settings, counts.plan.name),
      quiet: belowMinRows,
    }),
  );

  const classifier = scan.outputKind === 'probabilities' || (task !== undefined && task !== 'regression');
  const predictionAnalysis =
    scan.scoredRows > 0 || scan.predictedLabels.counts.size > 0
      ? analyzeFeature({
          feature: 'prediction',
          kind: classifier ? 'categorical' : 'numeric',
          ...(classifier
            ? { categorical: scan.predictedLabels }
            : scan.predictedValues
              ? { numeric: scan.predictedValues }
              : { missingOnly: scan.rows - scan.scoredRows }),
          rows: scan.rows,
          ...(labelColumn ? { baseline: labelColumn } : {}),
          ...(previous?.prediction ? { previous: previous.prediction } : {}),
          // Reported always; held to thresholds only when the definition names them: a classifier whose decision
          // threshold is not at the base rate predicts the classes in other shares than the labels have, by design.
          thresholds: {
            skew: settings.thresholds.prediction?.skew ?? settings.thresholds.skew,
            drift: settings.thresholds.prediction?.drift ?? settings.thresholds.drift,
          },
          quiet: belowMinRows || settings.thresholds.prediction === undefined,
        })
      : undefined;

  const classes = classifier ? classesOf(target, scan) : [];
  const threshold = target.definition?.evaluation.threshold ?? 0.5;
  const binary = scan.classCount === 2 && task !== 'multiclass';
  const calibrated =
    scan.outputKind === 'probabilities'
      ? await windowCalibration(
          deps,
          {
            eval: target.eval,
            transform: target.transform,
            model: { uri: version.onnxUri, sha256: version.sha256 },
            classCount: scan.classCount,
            binary,
            cached: previous?.summary.versionId === version.id ? previous.calibration?.artifact : undefined,
          },
          notes,
        )
      : undefined;
  const labelled = labelledMetrics(scan, task, classes, threshold, calibrated?.calibration);
  const probabilities = scan.probabilities.view();
  const estimated =
    scan.outputKind !== 'probabilities' || probabilities.length === 0
      ? undefined
      : estimatePerformance(probabilities, scan.classCount, binary, threshold, calibrated?.calibration);
  const estimateGap =
    labelled.live && labelled.estimatedOnLabelled
      ? Object.fromEntries(
          Object.entries(labelled.estimatedOnLabelled)
            .filter(([metric]) => labelled.live![metric] !== undefined)
            .map(([metric, value]) => [metric, labelled.live![metric]! - value]),
        )
      : undefined;

  const featureMonitoring: FeatureMonitoring[] = analyzed.map((a) => a.monitoring);
  const breaches = [
    ...distanceBreaches([...featureMonitoring, ...(predictionAnalysis ? [predictionAnalysis.monitoring] : [])]),
    ...performanceBreaches(settings.rollback, labelled.live, labelled.labelled, belowMinRows),
  ];
  const summary: Omit<WindowSummary, 'windowId' | 'reportUri'> = {
    deployment: input.deployment,
    model: target.model,
    version: version.version,
    versionId: version.id,
    windowStart: start.toISOString(),
    windowEnd: end.toISOString(),
    rows: scan.rows,
    labelledRows: labelled.labelled,
    features: featureMonitoring,
    ...(predictionAnalysis ? { prediction: predictionAnalysis.monitoring } : {}),
    ...(labelled.live && labelled.labelled > 0 ? { live: labelled.live } : {}),
    ...(estimated ? { estimated } : {}),
    ...(estimateGap ? { estimateGap } : {}),
    evaluation: version.metrics,
    breaches,
    breached: breaches.length > 0,
    belowMinRows,
  };
  const report: WindowReport = {
    version: 1,
    summary,
    ...(target.statisticsUri || training
      ? {
          baseline: {
            ...(target.statisticsUri ? { statistics: target.statisticsUri } : {}),
            ...(training ? { features: training.ref } : {}),
          },
        }
      : {}),
    ...(previousRow ? { previousWindowId: previousRow.id } : {}),
    thresholds: settings.thresholds,
    minRows: settings.minRows,
    features: analyzed.map((a) => a.report),
    ...(predictionAnalysis ? { prediction: predictionAnalysis.report } : {}),
    ...(classifier ? { classes } : {}),
    unmatchedLabels: labelled.unmatched,
    ...(labelled.estimatedOnLabelled ? { estimatedOnLabelled: labelled.estimatedOnLabelled } : {}),
    ...(calibrated ? { calibration: calibrated.report } : {}),
    notes,
  };
  const ref = await deps.artifacts.put(`${JSON.stringify(report)}\n`, {
    kind: 'monitoring-report.json',
    contentType: 'application/json',
  });
  const row = await store.upsertWindow({
    deployment: input.deployment,
    model: target.model,
    versionId: version.id,
    version: version.version,
    windowStart: start,
    windowEnd: end,
    rows: scan.rows,
    labelledRows: labelled.labelled,
    breached: summary.breached,
    summary: summary as unknown as schema.JsonProperties,
    reportUri: ref.uri,
    reportSha256: ref.sha256,
  });
  deps.logger.info(
    {
      deployment: input.deployment,
      windowId: row.id,
      rows: scan.rows,
      labelledRows: labelled.labelled,
      breaches: breaches.length,
    },
    'monitoring window computed',
  );
  return { windowId: row.id, ...summary, reportUri: ref.uri };
}
