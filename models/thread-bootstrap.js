// Entry of a training worker thread. Loader hooks (tsx) are per thread, so the thread registers tsx itself and
// then loads the TypeScript entry it was given; the same file serves `npm start`, the workers and the tests.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
