/**
 * Entry of a gradient-boosting helper thread (see parallel.ts): announce that the modules are loaded, receive the
 * shared arrays, then wait for tasks and claim their chunks until told to exit. Between tasks the thread polls
 * briefly, then blocks in Atomics.wait; it takes no messages after the first.
 */
import { parentPort } from 'node:worker_threads';
import {
  SLOT_DONE,
  SLOT_FAILED,
  SLOT_GENERATION,
  SLOT_HELPERS_ASLEEP,
  SLOT_TASK,
  SPIN_POLLS,
  TASK_EXIT,
  claimChunks,
} from './executor.js';
import { lossFor } from './losses.js';
import type { HelperInit, HelperMessage } from './parallel.js';

const port = parentPort;
if (!port) throw new Error('worker.ts runs as a worker thread (see parallel.ts)');
const post = (message: HelperMessage) => port.postMessage(message);

port.once('message', (init: HelperInit) => {
  const { arrays, control } = init;
  const loss = lossFor(init.task, init.numClasses);
  const ints = control.ints;
  post({ type: 'ready' });
  let seen = 0;
  try {
    for (;;) {
      let generation = Atomics.load(ints, SLOT_GENERATION);
      for (let polls = 0; generation === seen && polls < SPIN_POLLS; polls++) {
        generation = Atomics.load(ints, SLOT_GENERATION);
      }
      if (generation === seen) {
        Atomics.add(ints, SLOT_HELPERS_ASLEEP, 1);
        Atomics.wait(ints, SLOT_GENERATION, seen);
        Atomics.sub(ints, SLOT_HELPERS_ASLEEP, 1);
        continue;
      }
      seen = generation;
      if (ints[SLOT_TASK] === TASK_EXIT) break;
      claimChunks(arrays, loss, control, generation);
    }
  } catch (error) {
    Atomics.store(ints, SLOT_FAILED, 1);
    Atomics.notify(ints, SLOT_DONE);
    throw error;
  }
  port.close();
});
post({ type: 'loaded' });
