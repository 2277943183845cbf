/**
 * Runs many small trainings in worker threads, back to back, in one process: the way to look for a crash of the
 * thread's end (DuckDB's native close racing the thread's termination aborted the process about once in ten
 * integration runs). `npm run stress:training-thread -- 300` runs 300; exits 0 when all finished.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runTrainingThread } from '../models/run-training-thread.js';
import type { TrainerKind } from '../models/training-job.js';
import { trainingTransform as transform, writeTrainingSplit } from '../test/support/training-fixture.js';

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 200);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlops-stress-training-'));
  const trainPath = await writeTrainingSplit(dir, 2000);
  const trainers: TrainerKind[] = ['logistic_regression', 'gradient_boosted_trees'];
  const started = Date.now();
  for (let i = 0; i < runs; i++) {
    const trainer = trainers[i % trainers.length]!;
    const params = trainer === 'gradient_boosted_trees' ? { maxIterations: 3 } : { maxIterations: 5 };
    await runTrainingThread({ trainer, params, trainPath, transform, workDir: dir, checkpointEvery: 2 });
    if ((i + 1) % 50 === 0)
      process.stdout.write(`${i + 1} trainings, ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
  process.stdout.write(`${runs} trainings in worker threads finished, no crash\n`);
}

void main();
