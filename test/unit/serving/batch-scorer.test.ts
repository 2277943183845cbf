/**
 * The batch scoring engine without Temporal: it scores a Parquet file with an exported graph, refuses a model input
 * the data lacks with a domain error, and stops with an AbortError when its signal fires (the activity turns that
 * into Temporal's cancellation).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataEngine, sqlIdentifier, sqlString } from '../../../data/engine.js';
import { exportOnnx } from '../../../models/onnx/index.js';
import {
  BatchScoringError,
  PREDICTION_COLUMN,
  PROBABILITIES_COLUMN,
  scoreFiles,
  type ScoreFilesOptions,
  type ScoringProgress,
} from '../../../serving/batch-scorer.js';
import { compileSignature } from '../../../serving/signature.js';
import { makeTransform, randomLinear } from '../models/onnx-fixtures.js';

const ROWS = 5000;
const transform = makeTransform('binary');
const exported = exportOnnx(randomLinear('binary', transform, 1), transform);

let tmp: string;
let engine: DataEngine;
let inputPath: string;
let run = 0;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'batch-scorer-test-'));
  engine = await DataEngine.open({ workDir: path.join(tmp, 'input'), threads: 1 });
  inputPath = path.join(engine.workDir, 'input.parquet');
  const columns = transform.features.map((f, c) =>
    f.kind === 'numeric'
      ? `CASE WHEN i % 7 = ${c} THEN NULL ELSE CAST(i * 1.5 + ${c} AS DOUBLE) END AS ${sqlIdentifier(f.name)}`
      : `(['ORD', 'ATL', 'LAX', 'zz'])[i % 4 + 1] AS ${sqlIdentifier(f.name)}`,
  );
  await engine.run(
    `COPY (SELECT i AS id, ${columns.join(', ')} FROM range(${ROWS}) t(i)) TO ${sqlString(inputPath)} (FORMAT parquet)`,
  );
});

afterAll(async () => {
  engine.close();
  await rm(tmp, { recursive: true, force: true });
});

/** Options for one scoring pass in a fresh work folder. */
async function options(overrides: Partial<ScoreFilesOptions> = {}): Promise<ScoreFilesOptions> {
  run += 1;
  const workDir = path.join(tmp, `work-${run}`);
  await mkdir(workDir, { recursive: true });
  return {
    workDir,
    files: [inputPath],
    onnx: exported.bytes,
    signature: compileSignature(exported.signature),
    passthrough: ['id'],
    batchRows: 2048,
    onProgress: () => undefined,
    signal: new AbortController().signal,
    ...overrides,
  };
}

describe('scoreFiles', () => {
  it('writes one prediction per input row, after the pass-through columns, reporting progress', async () => {
    const progress: ScoringProgress[] = [];
    const scored = await scoreFiles(await options({ onProgress: (p) => progress.push(p) }));
    expect(scored).toMatchObject({ rows: ROWS, columns: ['id', PREDICTION_COLUMN, PROBABILITIES_COLUMN] });
    expect(progress.at(0)).toEqual({ phase: 'scoring', rows: 0, total: ROWS });
    expect(progress.at(-1)).toEqual({ phase: 'writing', rows: ROWS, total: ROWS });
    const reader = await DataEngine.open({
      workDir: path.join(tmp, 'reader'),
      readableDirs: [path.dirname(scored.outputPath)],
      threads: 1,
    });
    const [summary] = await reader
      .rows<{ n: bigint | number; ids: bigint | number }>(
        `SELECT count(*) AS n, count(DISTINCT id) AS ids FROM read_parquet(${sqlString(scored.outputPath)})`,
      )
      .finally(() => reader.close());
    expect(Number(summary?.n)).toBe(ROWS);
    expect(Number(summary?.ids)).toBe(ROWS);
  });

  it('refuses a model input the data lacks with a domain error naming the column', async () => {
    const feature = transform.features[0]!.name;
    const renamed = path.join(engine.workDir, 'renamed.parquet');
    await engine.run(
      `COPY (SELECT * RENAME (${sqlIdentifier(feature)} AS other) FROM read_parquet(${sqlString(inputPath)})) TO ${sqlString(renamed)} (FORMAT parquet)`,
    );
    const error = await scoreFiles(await options({ files: [renamed] })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BatchScoringError);
    expect(error).toMatchObject({ kind: 'invalid', details: { column: feature } });
  });

  it('stops with an AbortError when its signal has fired', async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await scoreFiles(await options({ signal: controller.signal })).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'AbortError', message: 'batch scoring was cancelled' });
  });
});
