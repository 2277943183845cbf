/** The serving benchmark's goals, checked on the medians over the rounds, and notes that are not goals. */
import type { SwapSample } from './hot-swap.js';
import { fmtInt, fmtMs } from './format.js';
import { median, type Summary } from './summary.js';

const GOAL_CEILING_SHARE = 0.5;
const GOAL_P99_MS = 3;
const GOAL_PEER_FACTOR = 50;
const GOAL_LOG_COST = 0.15;
const GOAL_BATCH_ROWS_PER_S = 500_000;
const GOAL_SWAP_P99_FACTOR = 3;

export interface Goal {
  readonly label: string;
  readonly status: 'PASS' | 'FAIL' | 'SKIPPED';
  readonly detail: string;
}

function goal(label: string, pass: boolean, detail: string): Goal {
  return { label, status: pass ? 'PASS' : 'FAIL', detail };
}

/**
 * The goals whose scenarios ran (a goal without its scenarios is left out; the peer's is SKIPPED with the reason in
 * `peerMissing` when the peer could not run), and the notes.
 */
export function evaluateGoals(input: {
  readonly summaries: ReadonlyMap<string, Summary>;
  readonly swapSamples: readonly SwapSample[];
  readonly connections: number;
  readonly batchSize: number;
  readonly peerMissing: string | undefined;
}): { goals: Goal[]; notes: string[] } {
  const { summaries, swapSamples, connections, batchSize, peerMissing } = input;
  const goals: Goal[] = [];
  const s = (key: string) => summaries.get(key);
  const ceiling = s('ceiling');
  for (const model of ['lr', 'gbt'] as const) {
    const ours = s(model);
    const name = model === 'lr' ? 'logistic regression' : 'gradient-boosted trees';
    if (ours && ceiling) {
      const share = ours.reqPerSec / ceiling.reqPerSec;
      goals.push(
        goal(
          `${name}: throughput ≥ ${GOAL_CEILING_SHARE * 100} % of the bare Hono route (validation, metrics, logs on)`,
          share >= GOAL_CEILING_SHARE,
          `${fmtInt(ours.reqPerSec)} vs ${fmtInt(ceiling.reqPerSec)} req/s: ${(share * 100).toFixed(1)} %`,
        ),
      );
    }
    if (ours) {
      goals.push(
        goal(
          `${name}: p99 under ${GOAL_P99_MS} ms at that load`,
          ours.p99 < GOAL_P99_MS,
          `p99 ${fmtMs(ours.p99)} ms (p50 ${fmtMs(ours.p50)}, p90 ${fmtMs(ours.p90)}) at ${connections} connections`,
        ),
      );
    }
    const peer = s(`peer-${model}`);
    if (ours && peer) {
      const factor = ours.reqPerSec / peer.reqPerSec;
      goals.push(
        goal(
          `${name}: ≥ ${GOAL_PEER_FACTOR}× FastAPI + scikit-learn`,
          factor >= GOAL_PEER_FACTOR,
          `${fmtInt(ours.reqPerSec)} vs ${fmtInt(peer.reqPerSec)} req/s: ${factor.toFixed(1)}× ` +
            `(peer p50 ${fmtMs(peer.p50)} ms, p99 ${fmtMs(peer.p99)} ms)`,
        ),
      );
    } else if (ours && peerMissing) {
      goals.push({
        label: `${name}: ≥ ${GOAL_PEER_FACTOR}× FastAPI + scikit-learn`,
        status: 'SKIPPED',
        detail: peerMissing,
      });
    }
    const nolog = s(`${model}-nolog`);
    if (ours && nolog) {
      const cost = 1 - ours.reqPerSec / nolog.reqPerSec;
      goals.push(
        goal(
          `${name}: logging every request (prediction log at sample rate 1) costs ≤ ${GOAL_LOG_COST * 100} % of throughput`,
          cost <= GOAL_LOG_COST,
          `${fmtInt(ours.reqPerSec)} with vs ${fmtInt(nolog.reqPerSec)} req/s without: ${(cost * 100).toFixed(1)} %`,
        ),
      );
    }
    const batch = s(`${model}-batch`);
    if (batch) {
      const nologBatch = s(`${model}-batch-nolog`);
      goals.push(
        goal(
          `${name}: batches of ${batchSize} instances ≥ ${fmtInt(GOAL_BATCH_ROWS_PER_S)} rows/s over HTTP (logs on)`,
          batch.rowsPerSec >= GOAL_BATCH_ROWS_PER_S,
          `${fmtInt(batch.rowsPerSec)} rows/s (${fmtInt(batch.reqPerSec)} req/s, p99 ${fmtMs(batch.p99)} ms)` +
            (nologBatch ? `; prediction log off: ${fmtInt(nologBatch.rowsPerSec)} rows/s` : ''),
        ),
      );
    }
  }
  // Not a goal (the goal is the prediction log's cost): the request log's line per request, and both together.
  const notes: string[] = [];
  const [lrOn, lrNolog, lrQuiet] = [s('lr'), s('lr-nolog'), s('lr-quiet')];
  if (lrOn && lrNolog && lrQuiet) {
    const pct = (a: number, b: number) => `${((1 - a / b) * 100).toFixed(1)} %`;
    notes.push(
      `logistic regression: the request log (one pino line per request) costs ${pct(lrNolog.reqPerSec, lrQuiet.reqPerSec)} ` +
        `(${fmtInt(lrNolog.reqPerSec)} vs ${fmtInt(lrQuiet.reqPerSec)} req/s); request log and prediction log together ` +
        `${pct(lrOn.reqPerSec, lrQuiet.reqPerSec)} (${fmtInt(lrOn.reqPerSec)} vs ${fmtInt(lrQuiet.reqPerSec)} req/s)`,
    );
  }
  const swapSummary = s('swap');
  if (swapSummary && swapSamples.length > 0) {
    const failed = swapSamples.reduce((a, x) => a + x.failed, 0);
    const notSeen = swapSamples.reduce((a, x) => a + x.swaps.filter((w) => w.swapMs === undefined).length, 0);
    const swapCount = swapSamples.reduce((a, x) => a + x.swaps.length, 0);
    goals.push(
      goal(
        'hot swap under full load: zero failed requests',
        failed === 0 && notSeen === 0,
        `${swapCount} deploys over ${swapSamples.length} run(s), ${fmtInt(swapSummary.requests)} requests, ${failed} failed` +
          (notSeen > 0 ? `, ${notSeen} swap(s) never observed` : ''),
      ),
    );
    const steady = s('gbt');
    const windowP99 = median(swapSamples.map((x) => x.windowP99));
    if (steady) {
      goals.push(
        goal(
          `hot swap: p99 during the swap under ${GOAL_SWAP_P99_FACTOR}× the steady p99`,
          windowP99 < GOAL_SWAP_P99_FACTOR * steady.p99,
          `window p99 ${fmtMs(windowP99)} ms vs steady ${fmtMs(steady.p99)} ms: ${(windowP99 / steady.p99).toFixed(2)}× ` +
            `(outside the windows in the same runs ${fmtMs(median(swapSamples.map((x) => x.outsideP99)))} ms; ` +
            `swap seen ${fmtInt(median(swapSamples.flatMap((x) => x.swaps.map((w) => w.swapMs ?? Number.NaN))))} ms ` +
            `after the deploy call, median)`,
        ),
      );
    }
  }
  return { goals, notes };
}
