import { runWorkerProcess } from './worker-process.js';

/** Serves the training task queue: the queue that GPU hosts poll. */
void runWorkerProcess(['training'], 'training-worker');
