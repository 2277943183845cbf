import { runWorkerProcess } from './worker-process.js';

/** Serves the main task queue: workflows and the pipeline's CPU activities. */
void runWorkerProcess(['main'], 'worker');
