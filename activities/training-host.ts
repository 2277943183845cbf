import { execFile } from 'node:child_process';
import os from 'node:os';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface GpuInfo {
  readonly name: string;
  readonly memoryMiB: number;
  readonly driverVersion: string;
}

export interface TrainingHostInfo {
  readonly hostname: string;
  readonly platform: string;
  readonly cpus: number;
  readonly memoryBytes: number;
  readonly nodeVersion: string;
  /** Empty when the host has no NVIDIA GPU (or no driver). */
  readonly gpus: readonly GpuInfo[];
}

/** Reads the NVIDIA GPUs through nvidia-smi; a host without it simply has none. */
async function listGpus(): Promise<GpuInfo[]> {
  try {
    const { stdout } = await execFileAsync(
      'nvidia-smi',
      ['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader,nounits'],
      { timeout: 10_000 },
    );
    return stdout
      .trim()
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => {
        const [name = '', memory = '0', driver = ''] = line.split(',').map((part) => part.trim());
        return { name, memoryMiB: Number(memory), driverVersion: driver };
      });
  } catch {
    return [];
  }
}

/** Activities served by the training task queue, the one GPU hosts poll. */
export function createTrainingHostActivities() {
  return {
    /** Describes the host that serves the training queue: what a scheduler needs to place training on it. */
    async probeTrainingHost(): Promise<TrainingHostInfo> {
      return {
        hostname: os.hostname(),
        platform: `${os.platform()}-${os.arch()}`,
        cpus: os.availableParallelism(),
        memoryBytes: os.totalmem(),
        nodeVersion: process.version,
        gpus: await listGpus(),
      };
    },
  };
}
