/**
 * The skew baseline of a served version: statistics of its prepared training split (the Transform stage's
 * `train.parquet`), one column per feature as the model saw it (after the definition's expressions, before the ONNX
 * graph's own preprocessing) and the label. Computed with DuckDB once per version and stored as a JSON artifact; each
 * window's report carries its address, so the next window of the same version reads it instead of computing it again
 * (a cache that survives worker restarts).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import type { ActivityDeps } from '../activities/deps.js';
import { DataEngine, sqlIdentifier, sqlString } from '../data/engine.js';
import { computeStatistics } from '../data/statistics.js';
import type { ColumnStatistics, DatasetStatistics } from '../data/types.js';
import { ArtifactNotFoundError, type ArtifactRef } from '../storage/artifact-store.js';

/** The prepared files' label column (see data/prepare.ts). */
export const PREPARED_LABEL_COLUMN = 'label';

/** Where a report keeps the training baseline: the statistics artifact and the train split it was computed from. */
export interface TrainingBaselineRef {
  readonly uri: string;
  readonly sha256: string;
  /** The URI of the train split. */
  readonly train: string;
}

export interface TrainingBaseline {
  readonly statistics: DatasetStatistics;
  readonly ref: TrainingBaselineRef;
  /** Read from an earlier window's artifact (true) or computed now. */
  readonly reused: boolean;
}

/**
 * A classifier's label column counted by class: the prepared files hold the class index, the served outputs the
 * class itself (`classes[index]`, as text). Other columns are returned as they are.
 */
function labelsAsClasses(column: ColumnStatistics, classes: readonly string[]): ColumnStatistics {
  if (!column.categorical) return column;
  const byClass = (counts: readonly { value: string; count: number }[]) =>
    counts.map((c) => ({ value: classes[Number(c.value)] ?? c.value, count: c.count }));
  const { topK, frequencies } = column.categorical;
  return {
    ...column,
    categorical: {
      ...column.categorical,
      topK: byClass(topK),
      ...(frequencies ? { frequencies: byClass(frequencies) } : {}),
    },
  };
}

/**
 * Statistics of a prepared train split: StatisticsGen's (data/statistics.ts) over every column. For a classifier
 * (`classes` given) the label column is categorical over the classes' text, as served labels are logged.
 * Read-only; works in a folder under `deps.scratchDir`, removed afterwards.
 *
 * @throws ArtifactNotFoundError when the train split no longer exists.
 */
export async function trainSplitStatistics(
  deps: Pick<ActivityDeps, 'artifacts' | 'scratchDir'>,
  train: ArtifactRef,
  classes: readonly string[] | undefined,
): Promise<DatasetStatistics> {
  const file = await deps.artifacts.materialize(train, path.join(deps.scratchDir, 'artifacts'));
  await mkdir(deps.scratchDir, { recursive: true });
  const workDir = await mkdtemp(path.join(deps.scratchDir, 'training-baseline-'));
  try {
    const engine = await DataEngine.open({ workDir, readableDirs: [path.dirname(file)] });
    try {
      const parquet = `read_parquet(${sqlString(file)})`;
      const label = sqlIdentifier(PREPARED_LABEL_COLUMN);
      const source = classes ? `(SELECT * REPLACE (CAST(${label} AS VARCHAR) AS ${label}) FROM ${parquet})` : parquet;
      const statistics = await computeStatistics(engine, source);
      if (!classes) return statistics;
      return {
        ...statistics,
        columns: statistics.columns.map((c) => (c.name === PREPARED_LABEL_COLUMN ? labelsAsClasses(c, classes) : c)),
      };
    } finally {
      engine.close();
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

/**
 * The training baseline of a version whose train split is `train`: the artifact `cached` names when it was computed
 * from that same split and still exists, else computed now and stored (content-addressed, so computing it twice
 * stores one object). Idempotent and retriable.
 *
 * @param cached the baseline an earlier window of the same version used (from its report), if any.
 * @throws ArtifactNotFoundError when it must be computed and the train split no longer exists.
 */
export async function trainingBaseline(
  deps: Pick<ActivityDeps, 'artifacts' | 'scratchDir'>,
  train: ArtifactRef,
  classes: readonly string[] | undefined,
  cached: TrainingBaselineRef | undefined,
): Promise<TrainingBaseline> {
  if (cached && cached.train === train.uri) {
    try {
      const statistics = JSON.parse((await deps.artifacts.get(cached)).toString('utf8')) as DatasetStatistics;
      return { statistics, ref: cached, reused: true };
    } catch (error) {
      if (!(error instanceof ArtifactNotFoundError)) throw error;
    }
  }
  const statistics = await trainSplitStatistics(deps, train, classes);
  const stored = await deps.artifacts.put(`${JSON.stringify(statistics)}\n`, {
    kind: 'train-statistics.json',
    contentType: 'application/json',
  });
  return { statistics, ref: { uri: stored.uri, sha256: stored.sha256, train: train.uri }, reused: false };
}
