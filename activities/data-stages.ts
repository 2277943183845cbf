import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { toApplicationFailure } from '../core/application-failure.js';
import { FailureType } from '../core/constants.js';
import { DataEngine, sqlString } from '../data/engine.js';
import { extractSnapshot, type PostgresSource, type Snapshot, type Span } from '../data/extract.js';
import { prepareDataset, type FeatureSpec, type LabelSpec, type PrepareOptions } from '../data/prepare.js';
import type { SplitSpec } from '../data/split.js';
import { inferSchema } from '../data/schema.js';
import { computeStatistics } from '../data/statistics.js';
import type { FittedTransform } from '../data/transform.js';
import type { DatasetSchema, DatasetStatistics, ValidationReport } from '../data/types.js';
import { formatValidationReport, validateDataset } from '../data/validate.js';
import { ArtifactType } from '../schema/index.js';
import type { ArtifactRef } from '../storage/artifact-store.js';
import { activityLogger } from './activity-logger.js';
import type { ActivityDeps } from './deps.js';
import { inWorkDir as inWorkDirOf } from './work-dir.js';
import { completedStageResult, recordStage, recordStageFailure, type StageIdentity } from './stage-lineage.js';

const JSON_TYPE = 'application/json';

export interface ExtractDataInput {
  /** The dataset (usually the pipeline's name): snapshots, schema versions and drift baselines belong to it. */
  readonly dataset: string;
  readonly source: string | PostgresSource;
  readonly format?: 'csv' | 'parquet' | 'json';
  readonly span?: Span;
}

export interface ExtractDataResult {
  readonly snapshot: ArtifactRef;
  readonly rowCount: number;
  readonly columns: readonly { name: string; type: string }[];
  readonly fingerprint: string;
  /** True when an earlier extraction of the same unchanged input was reused (nothing read or uploaded). */
  readonly reused: boolean;
}

export interface StatisticsResult {
  readonly statistics: ArtifactRef;
  readonly rowCount: number;
}

export interface ValidateDataInput {
  readonly dataset: string;
  readonly snapshot: ArtifactRef;
  readonly statistics: ArtifactRef;
}

export interface ValidateDataResult {
  readonly schema: ArtifactRef;
  readonly schemaVersion: number;
  /** True when this snapshot was the dataset's first, and its schema was inferred from it. */
  readonly schemaInferred: boolean;
  readonly report: ArtifactRef;
  readonly anomalies: number;
}

export interface PrepareDataInput {
  readonly dataset: string;
  readonly snapshot: ArtifactRef;
  readonly label: LabelSpec;
  readonly features: readonly FeatureSpec[];
  readonly split: SplitSpec;
  readonly options?: PrepareOptions;
}

export interface PrepareDataResult {
  readonly train: ArtifactRef;
  readonly eval: ArtifactRef;
  readonly transform: ArtifactRef;
  readonly trainRows: number;
  readonly evalRows: number;
  readonly droppedNullLabels: number;
  readonly classes?: readonly (string | number | boolean)[];
}

/** The data stages of a pipeline (TFX's ExampleGen, StatisticsGen, SchemaGen + ExampleValidator, Transform). */
export function createDataActivities(deps: ActivityDeps) {
  const objectCache = path.join(deps.scratchDir, 'objects');
  const artifactCache = path.join(deps.scratchDir, 'artifacts');

  /** A private work folder for one attempt of one stage, removed afterwards. */
  const inWorkDir = <T>(stage: string, work: (dir: string) => Promise<T>): Promise<T> =>
    inWorkDirOf(deps.scratchDir, stage, work);

  /** Downloads (or reuses) a content-addressed artifact into the verified local cache for DuckDB to read. */
  async function local(ref: ArtifactRef): Promise<string> {
    return deps.artifacts.materialize(ref, artifactCache);
  }

  async function readJson<T>(ref: ArtifactRef | { uri: string; sha256: string }): Promise<T> {
    return JSON.parse((await deps.artifacts.get(ref)).toString('utf8')) as T;
  }

  async function putJson(value: unknown, kind: string): Promise<ArtifactRef> {
    return deps.artifacts.put(`${JSON.stringify(value, null, 1)}\n`, { kind, contentType: JSON_TYPE });
  }

  function heartbeat(details: Record<string, unknown>): void {
    Context.current().heartbeat(details);
  }

  return {
    /**
     * ExampleGen: snapshots the source as one Parquet artifact (content-addressed). An unchanged source (same
     * fingerprint as an earlier complete extraction whose snapshot still exists) is reused without being read.
     * Typed, non-retryable failures for a missing, empty or corrupt source or a bad query.
     */
    async extractData(input: ExtractDataInput): Promise<ExtractDataResult> {
      const identity: StageIdentity = { stage: 'extract', executionType: 'ExampleGen', context: input.dataset };
      const done = await completedStageResult<ExtractDataResult>(deps.metadata, identity.stage);
      if (done) return done;
      const log = activityLogger(deps.logger);
      let reused = false;
      const snapshot = await inWorkDir(identity.stage, (workDir) =>
        extractSnapshot({
          source: input.source,
          ...(input.format ? { format: input.format } : {}),
          ...(input.span ? { span: input.span } : {}),
          workDir,
          cacheDir: objectCache,
          artifacts: deps.artifacts,
          objectSource: deps.objects,
          policy: deps.dataAccess.policy,
          connections: deps.dataAccess.connections,
          postgres: {
            ...(deps.dataAccess.connectTimeoutMs ? { connectTimeoutMs: deps.dataAccess.connectTimeoutMs } : {}),
            ...(deps.dataAccess.statementTimeoutMs ? { statementTimeoutMs: deps.dataAccess.statementTimeoutMs } : {}),
          },
          signal: Context.current().cancellationSignal,
          onProgress: (progress) => heartbeat({ stage: identity.stage, ...progress }),
          findExisting: async (fingerprint) => {
            const earlier = await deps.metadata.findCompletedExecution('ExampleGen', { fingerprint });
            const result = (earlier?.properties as { result?: ExtractDataResult } | undefined)?.result;
            if (!result || !(await deps.artifacts.exists(result.snapshot))) return undefined;
            reused = true;
            return {
              artifact: result.snapshot,
              rowCount: result.rowCount,
              columns: result.columns,
              fingerprint,
              sourceDescription: '',
            } satisfies Snapshot;
          },
        }).catch((error: unknown) => {
          throw toApplicationFailure(error, { stage: identity.stage });
        }),
      );
      const result: ExtractDataResult = {
        snapshot: snapshot.artifact,
        rowCount: snapshot.rowCount,
        columns: snapshot.columns,
        fingerprint: snapshot.fingerprint,
        reused,
      };
      await recordStage(deps.metadata, identity, {
        inputs: [],
        outputs: [
          {
            role: 'examples',
            type: ArtifactType.Dataset,
            ref: snapshot.artifact,
            properties: { dataset: input.dataset, rowCount: snapshot.rowCount, columns: snapshot.columns },
          },
        ],
        result,
      });
      log.info({ rows: snapshot.rowCount, reused, uri: snapshot.artifact.uri }, 'snapshot extracted');
      return result;
    },

    /** StatisticsGen: per-column statistics of a snapshot, stored as JSON (comparable between snapshots). */
    async computeStatistics(input: { dataset: string; snapshot: ArtifactRef }): Promise<StatisticsResult> {
      const identity: StageIdentity = { stage: 'statistics', executionType: 'StatisticsGen', context: input.dataset };
      const done = await completedStageResult<StatisticsResult>(deps.metadata, identity.stage);
      if (done) return done;
      const file = await local(input.snapshot);
      heartbeat({ stage: identity.stage, phase: 'computing' });
      const statistics = await inWorkDir(identity.stage, async (workDir) => {
        const engine = await DataEngine.open({ workDir, readableDirs: [path.dirname(file)] });
        try {
          return await computeStatistics(engine, `read_parquet(${sqlString(file)})`);
        } finally {
          engine.close();
        }
      });
      const ref = await putJson(statistics, 'statistics.json');
      const result: StatisticsResult = { statistics: ref, rowCount: statistics.rowCount };
      await recordStage(deps.metadata, identity, {
        inputs: [{ role: 'examples', type: ArtifactType.Dataset, ref: input.snapshot }],
        outputs: [{ role: 'statistics', type: ArtifactType.Statistics, ref, properties: { dataset: input.dataset } }],
        result,
      });
      return result;
    },

    /**
     * SchemaGen + ExampleValidator: infers the dataset's schema from its first snapshot (version 1, recorded as
     * inferred by `system`); validates later snapshots against the schema in force and measures drift against the
     * statistics of the last snapshot that passed. Anomalies are stored as a report (JSON and Markdown) and end the
     * stage with a non-retryable `DataValidation` failure naming them; a clean snapshot becomes the drift baseline.
     */
    async validateData(input: ValidateDataInput): Promise<ValidateDataResult> {
      const identity: StageIdentity = {
        stage: 'validate_data',
        executionType: 'ExampleValidator',
        context: input.dataset,
      };
      const done = await completedStageResult<ValidateDataResult>(deps.metadata, identity.stage);
      if (done) return done;
      const statistics = await readJson<DatasetStatistics>(input.statistics);
      const current = await deps.datasets.currentSchema(input.dataset);
      let schema: DatasetSchema;
      let schemaRef: ArtifactRef;
      let schemaVersion: number;
      const schemaInferred = current === undefined;
      if (current) {
        schema = await readJson<DatasetSchema>({ uri: current.artifact.uri, sha256: current.artifact.sha256 ?? '' });
        schemaRef = {
          uri: current.artifact.uri,
          sha256: current.artifact.sha256 ?? '',
          bytes: current.artifact.bytes ?? 0,
          contentType: current.artifact.contentType ?? JSON_TYPE,
          kind: 'schema.json',
        };
        schemaVersion = current.version;
      } else {
        // Recorded as version 1 only once this snapshot passes: a broken first snapshot must not become the norm.
        schema = inferSchema(statistics);
        schemaRef = await putJson(schema, 'schema.json');
        schemaVersion = 1;
      }
      const baseline = schemaInferred ? undefined : await deps.datasets.baselineStatistics(input.dataset);
      const previous = baseline
        ? await readJson<DatasetStatistics>({ uri: baseline.uri, sha256: baseline.sha256 ?? '' })
        : undefined;

      const file = await local(input.snapshot);
      heartbeat({ stage: identity.stage, phase: 'validating' });
      let report = await inWorkDir(identity.stage, async (workDir) => {
        const engine = await DataEngine.open({ workDir, readableDirs: [path.dirname(file)] });
        try {
          return await validateDataset(engine, `read_parquet(${sqlString(file)})`, {
            schema,
            statistics,
            ...(previous ? { previous } : {}),
          });
        } finally {
          engine.close();
        }
      });
      if (schemaInferred) report = withUnusableColumns(report, statistics);
      const reportRef = await putJson(report, 'validation-report.json');
      const readable = await deps.artifacts.put(
        formatValidationReport(report, { title: `${input.dataset}: validation` }),
        {
          kind: 'validation-report.md',
          contentType: 'text/markdown; charset=utf-8',
        },
      );
      const outputs = [
        {
          role: 'schema',
          type: ArtifactType.Schema,
          ref: schemaRef,
          properties: { dataset: input.dataset, version: schemaVersion },
        },
        {
          role: 'anomalies',
          type: ArtifactType.Anomalies,
          ref: reportRef,
          properties: { dataset: input.dataset, ok: report.ok, schemaVersion: schemaInferred ? null : schemaVersion },
        },
        { role: 'report', type: ArtifactType.Report, ref: readable, properties: { dataset: input.dataset } },
      ];
      const inputs = [
        { role: 'examples', type: ArtifactType.Dataset, ref: input.snapshot },
        { role: 'statistics', type: ArtifactType.Statistics, ref: input.statistics },
      ];
      if (!report.ok) {
        // Recorded before failing, so the report is in the lineage and the stage shows why it stopped.
        await recordStage(
          deps.metadata,
          { ...identity, stage: 'validate_data-rejected' },
          { inputs, outputs, result: null },
        );
        await recordStageFailure(deps.metadata, identity, {
          type: FailureType.DataValidation,
          message: summarize(report),
          reportUri: reportRef.uri,
        });
        throw ApplicationFailure.create({
          type: FailureType.DataValidation,
          message: `${input.dataset}: ${summarize(report)}`,
          nonRetryable: true,
          details: [
            {
              stage: identity.stage,
              report: reportRef,
              readableReport: readable,
              schemaVersion: schemaInferred ? null : schemaVersion,
              anomalies: report.anomalies.map((a) => ({ column: a.column, type: a.type, message: a.message })),
            },
          ],
        });
      }
      if (schemaInferred) {
        const schemaArtifact = await deps.metadata.putArtifact({
          type: ArtifactType.Schema,
          uri: schemaRef.uri,
          sha256: schemaRef.sha256,
          bytes: schemaRef.bytes,
          contentType: JSON_TYPE,
          properties: { dataset: input.dataset },
        });
        const version = await deps.datasets.recordSchemaVersion({
          dataset: input.dataset,
          basedOnVersion: null,
          artifactId: schemaArtifact.id,
          kind: 'inferred',
          actor: 'system',
          reason: 'inferred from the first snapshot of the dataset',
        });
        schemaVersion = version.version;
      }
      const result: ValidateDataResult = {
        schema: schemaRef,
        schemaVersion,
        schemaInferred,
        report: reportRef,
        anomalies: 0,
      };
      const recorded = await recordStage(deps.metadata, identity, { inputs, outputs, result });
      const statisticsArtifact = await deps.metadata.getArtifactByUri(input.statistics.uri);
      if (statisticsArtifact) await deps.datasets.setBaselineStatistics(input.dataset, statisticsArtifact.id);
      activityLogger(deps.logger).info({ schemaVersion, executionId: recorded.executionId }, 'snapshot validated');
      return result;
    },

    /**
     * Transform: evaluates the label and feature expressions (validated, in the sandbox), splits, fits the
     * preprocessing on the training split only, and stores train/eval Parquet and the fitted transform.
     */
    async prepareData(input: PrepareDataInput): Promise<PrepareDataResult> {
      const identity: StageIdentity = { stage: 'prepare', executionType: 'Transform', context: input.dataset };
      const done = await completedStageResult<PrepareDataResult>(deps.metadata, identity.stage);
      if (done) return done;
      const file = await local(input.snapshot);
      heartbeat({ stage: identity.stage, phase: 'preparing' });
      const prepared = await inWorkDir(identity.stage, async (workDir) => {
        const engine = await DataEngine.open({ workDir, readableDirs: [path.dirname(file)] });
        try {
          const out = await prepareDataset(
            engine,
            {
              input: file,
              label: input.label,
              features: input.features,
              split: input.split,
              ...(input.options ? { options: input.options } : {}),
            },
            path.join(workDir, 'out'),
          );
          heartbeat({ stage: identity.stage, phase: 'uploading', trainRows: out.train.rows, evalRows: out.eval.rows });
          const [train, evalSplit, transform] = await Promise.all([
            deps.artifacts.putFile(out.train.path, {
              kind: 'train.parquet',
              contentType: 'application/vnd.apache.parquet',
            }),
            deps.artifacts.putFile(out.eval.path, {
              kind: 'eval.parquet',
              contentType: 'application/vnd.apache.parquet',
            }),
            putJson(out.transform satisfies FittedTransform, 'transform.json'),
          ]);
          return { out, train, evalSplit, transform };
        } catch (error) {
          throw toApplicationFailure(error, { stage: 'prepare' });
        } finally {
          engine.close();
        }
      });
      const result: PrepareDataResult = {
        train: prepared.train,
        eval: prepared.evalSplit,
        transform: prepared.transform,
        trainRows: prepared.out.train.rows,
        evalRows: prepared.out.eval.rows,
        droppedNullLabels: prepared.out.droppedNullLabels,
        ...(prepared.out.labelInfo.classes ? { classes: prepared.out.labelInfo.classes } : {}),
      };
      await recordStage(deps.metadata, identity, {
        inputs: [{ role: 'examples', type: ArtifactType.Dataset, ref: input.snapshot }],
        outputs: [
          {
            role: 'train',
            type: ArtifactType.Dataset,
            ref: prepared.train,
            properties: { split: 'train', rows: result.trainRows },
          },
          {
            role: 'eval',
            type: ArtifactType.Dataset,
            ref: prepared.evalSplit,
            properties: { split: 'eval', rows: result.evalRows },
          },
          { role: 'transform', type: ArtifactType.Transform, ref: prepared.transform },
        ],
        result,
      });
      return result;
    },
  };
}

/**
 * A first snapshot validates against the schema inferred from itself, which would bless a column that has no value
 * at all (a broken upstream join, say): such columns are anomalies before any schema exists.
 */
function withUnusableColumns(report: ValidationReport, statistics: DatasetStatistics): ValidationReport {
  const empty = statistics.columns.filter((c) => c.count > 0 && c.missing === c.count);
  if (empty.length === 0) return report;
  const anomalies = empty.map((c) => ({
    column: c.name,
    type: 'all_null' as const,
    message: `Column "${c.name}" has no value in any of its ${c.count} rows; a schema is not inferred from it.`,
    value: 1,
    threshold: 0,
  }));
  return { ...report, ok: false, anomalies: [...anomalies, ...report.anomalies] };
}

function summarize(report: ValidationReport): string {
  const shown = report.anomalies.slice(0, 5).map((a) => a.message);
  const more = report.anomalies.length > shown.length ? ` (and ${report.anomalies.length - shown.length} more)` : '';
  return `${report.anomalies.length} data anomal${report.anomalies.length === 1 ? 'y' : 'ies'}: ${shown.join('; ')}${more}`;
}
