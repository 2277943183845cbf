import path from 'node:path';
import { DataEngine } from '../../data/engine.js';
import type { FittedTransform } from '../../data/transform.js';

/** The transform of {@link writeTrainingSplit}'s file: a numeric and a categorical feature, a binary label. */
export const trainingTransform: FittedTransform = {
  version: 1,
  scaling: 'standard',
  features: [
    {
      name: 'distance',
      expression: 'distance',
      sql: 'distance',
      sourceType: 'DOUBLE',
      kind: 'numeric',
      numeric: { imputeValue: 500, mean: 500, std: 300 },
    },
    {
      name: 'origin',
      expression: 'origin',
      sql: 'origin',
      sourceType: 'VARCHAR',
      kind: 'categorical',
      categorical: { vocabulary: ['ORD', 'SFO', 'JFK'], unknownIndex: 3 },
    },
  ],
  label: { name: 'delayed', expression: 'delay > 15', sql: '(delay > 15)', task: 'binary', classes: [false, true] },
};

/** Writes a prepared training split of `rows` rows (as the prepare stage leaves it) to `dir`; returns its path. */
export async function writeTrainingSplit(dir: string, rows: number): Promise<string> {
  const file = path.join(dir, 'train.parquet');
  const engine = await DataEngine.open({ workDir: dir });
  try {
    await engine.run(
      `copy (select random() * 2000 as distance, (['ORD', 'SFO', 'JFK'])[1 + (i % 3)::INTEGER] as origin,
         (random() < 0.3)::INTEGER as label from range(${rows}) t(i)) to '${file}' (format parquet)`,
    );
  } finally {
    engine.close();
  }
  return file;
}
