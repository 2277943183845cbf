import type { QueueRole } from './run-workers.js';
import { runWorkerProcess } from './worker-process.js';

/**
 * The worker process that `npm start` supervises (workers/worker-child.ts): serves the queues named in its first
 * argument (`main,training`, the default).
 */
const roles = (process.argv[2] ?? 'main,training')
  .split(',')
  .filter((role): role is QueueRole => role === 'main' || role === 'training');
void runWorkerProcess(roles.length > 0 ? roles : ['main', 'training'], 'workers');
