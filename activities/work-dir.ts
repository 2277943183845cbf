import fs from 'node:fs';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { DataEngine } from '../data/engine.js';

/**
 * Runs `work` in a fresh folder under the worker's scratch folder, named after the workflow, stage and attempt (so
 * two attempts, or two runs on one worker, never share one), and removes it afterwards whatever happens.
 */
export async function inWorkDir<T>(scratchDir: string, stage: string, work: (dir: string) => Promise<T>): Promise<T> {
  const { info } = Context.current();
  const id = `${info.workflowExecution?.workflowId ?? 'standalone'}-${stage}-${info.attempt}`.replace(/[^\w.-]/g, '_');
  const dir = path.join(scratchDir, 'work', id);
  fs.mkdirSync(dir, { recursive: true });
  try {
    return await work(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Runs `work` with a DataEngine opened in a fresh work folder (see {@link inWorkDir}) that may read the folder of
 * `readable`; closes the engine and removes the folder afterwards, whatever happens.
 */
export async function withDataEngine<T>(
  scratchDir: string,
  stage: string,
  readable: string,
  work: (engine: DataEngine) => Promise<T>,
): Promise<T> {
  return inWorkDir(scratchDir, stage, async (workDir) => {
    const engine = await DataEngine.open({ workDir, readableDirs: [path.dirname(readable)] });
    try {
      return await work(engine);
    } finally {
      engine.close();
    }
  });
}
