/**
 * The FastAPI + scikit-learn peer (bench/serving_reference.py): uvicorn with one worker, scikit-learn trained on the
 * same training rows as our models, one thread.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { findFreePorts } from '../../stack/ports.js';
import { predictStatus, tail, waitForExit, type Server } from './server-process.js';

const PYTHON = '/usr/bin/python3';
const PEER_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'serving_reference.py');

/** What the peer reports of itself once trained (its `--out` file). */
export interface PeerInfo {
  readonly train_rows: number;
  readonly load_s: number;
  readonly fit_s: Record<string, number>;
  readonly predict_proba_single_row_ms: Record<string, number>;
  readonly versions: Record<string, string>;
  readonly omp_num_threads: string | null;
}

/** Why the peer cannot run here, or undefined when it can. */
export function peerUnavailable(): string | undefined {
  if (!fs.existsSync(PYTHON)) return `${PYTHON} is missing`;
  const missing = ['sklearn', 'fastapi', 'uvicorn'].filter(
    (module) => spawnSync(PYTHON, ['-c', `import ${module}`], { stdio: 'ignore' }).status !== 0,
  );
  if (missing.length === 0) return undefined;
  const packages = { sklearn: 'python3-sklearn', fastapi: 'python3-fastapi', uvicorn: 'python3-uvicorn' };
  return (
    `Python module(s) ${missing.join(', ')} not installed: apt-get install -y ` +
    missing.map((m) => packages[m as keyof typeof packages]).join(' ')
  );
}

/**
 * Starts the peer on a free port: it trains on `trainCsv` (CSV with the features and `label`), then serves both
 * models under `names`. Resolves once `probeBody` is answered 200 by the logistic regression (at most 10 minutes).
 */
export async function startPeer(
  trainCsv: string,
  names: { lr: string; gbt: string },
  probeBody: string,
  dir: string,
): Promise<{ server: Server; info: PeerInfo }> {
  const [port] = await findFreePorts(1);
  const log = path.join(dir, 'peer.log');
  const infoFile = path.join(dir, 'peer-info.json');
  const fd = fs.openSync(log, 'a');
  // One thread: training HistGradientBoosting with OpenMP threads spinning on 2 shared cores is erratic (see the
  // trainers benchmark), and a one-row predict_proba gains nothing from threads.
  const child = spawn(
    PYTHON,
    [
      PEER_SCRIPT,
      ...['--train', trainCsv, '--port', String(port), '--lr-name', names.lr, '--gbt-name', names.gbt],
      ...['--out', infoFile],
    ],
    { stdio: ['ignore', fd, fd], env: { ...process.env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' } },
  );
  fs.closeSync(fd);
  const url = `http://127.0.0.1:${port}`;
  const deadline = performance.now() + 600_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the FastAPI peer exited with ${child.exitCode}\n${tail(log)}`);
    if (performance.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the FastAPI peer was not ready after 10 minutes\n${tail(log)}`);
    }
    if ((await predictStatus(url, names.lr, probeBody)) === 200) break;
    await sleep(500);
  }
  const info = JSON.parse(fs.readFileSync(infoFile, 'utf8')) as PeerInfo;
  return {
    info,
    server: {
      name: 'peer',
      url,
      pid: child.pid!,
      log,
      token: undefined,
      eventLoop: () => Promise.resolve(undefined),
      memory: () => Promise.resolve(undefined),
      close: async () => {
        child.kill('SIGTERM');
        await waitForExit(child, 10_000);
      },
    },
  };
}
