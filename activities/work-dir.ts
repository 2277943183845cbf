import fs from 'node:fs';
import path from 'node:path';
import { Context } from '@temporalio/activity';

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
