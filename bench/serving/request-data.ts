/**
 * The request bodies: rows of the evaluation month (March 2001) computed with the demo definition's own feature
 * expressions (DuckDB, a fixed pseudo-random sample), and the training rows as CSV for the FastAPI peer.
 */
import path from 'node:path';
import { DataEngine, sqlIdentifier, sqlString } from '../../data/engine.js';
import { DEMO_SPAN, flightsDelayDefinition } from '../../demo/flights.js';
import { flightsFile } from '../../demo/landing.js';
import type { ModelVersion } from '../../schema/registry.js';
import type { Instance } from '../../serving/signature.js';
import { check } from '../harness.js';

const SINGLE_BODIES = 1000;
const BATCH_BODIES = 16;

/** The eval month's rows (a fixed pseudo-random sample) as instances, and the training rows as CSV for the peer. */
async function prepareData(
  dir: string,
  version: ModelVersion,
  rows: number,
  trainCsv: string | undefined,
): Promise<Instance[]> {
  const definition = flightsDelayDefinition('s3://unused/flights.parquet');
  const split = definition.split;
  check(split?.kind === 'time' && split.evalBefore !== undefined, 'the demo definition has no bounded time split');
  const { trainBefore, evalBefore } = split;
  const source = flightsFile();
  const engine = await DataEngine.open({ workDir: dir, readableDirs: [path.dirname(source)], threads: 2 });
  try {
    const features = definition.features.map((f) => `${f.expression} AS ${sqlIdentifier(f.name)}`).join(', ');
    const between = (from: string, to: string) =>
      `date >= TIMESTAMP ${sqlString(from)} AND date < TIMESTAMP ${sqlString(to)}`;
    const sample = await engine.rows<Record<string, unknown>>(
      `SELECT ${features} FROM read_parquet(${sqlString(source)}, file_row_number = true)
       WHERE ${between(trainBefore, evalBefore)}
       ORDER BY md5(CAST(file_row_number AS VARCHAR)) LIMIT ${rows}`,
    );
    check(sample.length === rows, `only ${sample.length} eval rows`);
    if (trainCsv) {
      await engine.run(
        `COPY (SELECT ${features}, CAST((${definition.label.expression}) AS INTEGER) AS label
               FROM read_parquet(${sqlString(source)}) WHERE ${between(DEMO_SPAN.from, trainBefore)})
         TO ${sqlString(trainCsv)} (FORMAT csv, HEADER true)`,
      );
    }
    const inputs = version.signature.inputs;
    return sample.map((row) => {
      const instance: Record<string, unknown> = {};
      for (const input of inputs) {
        check(input.name in row, `the signature's input ${input.name} is not a feature of the demo definition`);
        const value = row[input.name];
        instance[input.name] =
          value === null || value === undefined ? null : input.type === 'string' ? String(value) : Number(value);
      }
      return instance;
    });
  } finally {
    engine.close();
  }
}

export interface RequestData {
  /** Every sampled instance (at least `SINGLE_BODIES`, and `BATCH_BODIES` batches' worth). */
  readonly instances: readonly Instance[];
  /** `SINGLE_BODIES` distinct one-instance bodies. */
  readonly singleBodies: readonly string[];
  /** `BATCH_BODIES` distinct bodies of `batchSize` instances. */
  readonly batchBodies: readonly string[];
}

/**
 * Samples the instances for `version`'s signature (DuckDB working in `duckdbDir`), writes the training rows to
 * `trainCsv` when given, builds the request bodies and prints what they look like.
 */
export async function prepareRequests(
  duckdbDir: string,
  version: ModelVersion,
  batchSize: number,
  trainCsv: string | undefined,
): Promise<RequestData> {
  const instances = await prepareData(duckdbDir, version, Math.max(SINGLE_BODIES, BATCH_BODIES * batchSize), trainCsv);
  const singleBodies = instances.slice(0, SINGLE_BODIES).map((i) => JSON.stringify({ instances: [i] }));
  const batchBodies = Array.from({ length: BATCH_BODIES }, (_, b) =>
    JSON.stringify({ instances: instances.slice(b * batchSize, (b + 1) * batchSize) }),
  );
  console.log(
    `request bodies: ${SINGLE_BODIES} single-instance (${singleBodies[0]!.length} bytes, e.g. ${singleBodies[0]}), ` +
      `${BATCH_BODIES} of ${batchSize} instances (~${Math.round(batchBodies[0]!.length / 1024)} KiB)`,
  );
  return { instances, singleBodies, batchBodies };
}
