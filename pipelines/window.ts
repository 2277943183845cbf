/**
 * Sliding windows: a definition's `window` ("the last N days of the source, the latest M of them for evaluation")
 * resolved against an anchor into concrete spans, and what the extract and prepare stages then use. Pure functions
 * over plain values: the pipeline workflow imports them, so nothing here may read a clock or the environment.
 *
 * Spans are half-open, `[from, to)`, on the window's column, at millisecond precision (ISO 8601 with `Z`):
 * - `relativeTo: 'data'`: the window ends 1 ms after the newest value of the column in the source, so the newest row
 *   is in it; with a DATE column of daily rows, `trainDays: 30` is exactly the 30 newest dates.
 * - `relativeTo: 'trigger'`: the window ends at the run's start (rows at or after it are left out).
 * With an eval part, eval is `[end - eval, end)` and train `[end - eval - train, end - eval)`: adjacent, not
 * overlapping, train before eval. Without one, train is `[end - train, end)` and the definition's `split` divides it.
 */
import type { SplitSpec } from '../data/split.js';
import type { ResolvedSpans } from '../schema/pipelines.js';
import type { PipelineDefinition } from './definition.js';

export type { ResolvedSpans } from '../schema/pipelines.js';

/** A definition's window as validated (defaults filled in). */
export type SlidingWindow = NonNullable<PipelineDefinition['window']>;

const DAY_MS = 86_400_000;

/** What the window is measured back from. `at`: the newest event time, or the run's start. */
export interface WindowAnchor {
  readonly kind: 'data' | 'trigger';
  readonly at: Date;
}

/** The window's lengths in milliseconds; `evalMs` absent when it has no eval part. */
export function windowLengths(window: SlidingWindow): { trainMs: number; evalMs?: number } {
  const trainMs = Math.round(
    window.trainSeconds !== undefined ? window.trainSeconds * 1000 : window.trainDays! * DAY_MS,
  );
  const evalMs =
    window.evalSeconds !== undefined
      ? window.evalSeconds * 1000
      : window.evalDays !== undefined
        ? Math.round(window.evalDays * DAY_MS)
        : undefined;
  return { trainMs, ...(evalMs !== undefined ? { evalMs } : {}) };
}

/**
 * The window's concrete spans measured back from `anchor` (see the module comment for the boundaries).
 *
 * @example
 * resolveWindow({ column: 'ts', trainDays: 20, evalDays: 10, relativeTo: 'data' },
 *   { kind: 'data', at: new Date('2024-03-01T00:00:00Z') });
 * // train [2024-01-31T00:00:00.001Z, 2024-02-20T00:00:00.001Z), eval [2024-02-20T00:00:00.001Z, 2024-03-01T00:00:00.001Z)
 */
export function resolveWindow(window: SlidingWindow, anchor: WindowAnchor): ResolvedSpans {
  const at = anchor.at.getTime();
  if (!Number.isFinite(at)) throw new RangeError('the window anchor is not a valid time');
  const end = anchor.kind === 'data' ? at + 1 : at;
  const { trainMs, evalMs } = windowLengths(window);
  const iso = (ms: number) => new Date(ms).toISOString();
  const trainEnd = end - (evalMs ?? 0);
  return {
    column: window.column,
    train: { from: iso(trainEnd - trainMs), to: iso(trainEnd) },
    ...(evalMs !== undefined ? { eval: { from: iso(trainEnd), to: iso(end) } } : {}),
    anchor: { kind: anchor.kind, at: anchor.at.toISOString() },
  };
}

/** The rows the extract stage keeps: train and eval together, `[train.from, (eval ?? train).to)`. */
export function extractSpanOf(spans: ResolvedSpans): { column: string; from: string; to: string } {
  return { column: spans.column, from: spans.train.from, to: (spans.eval ?? spans.train).to };
}

/**
 * The split the prepare stage applies: a time split at the eval span when the window has one, else the definition's
 * own `split` (which validation requires then).
 */
export function splitOf(definition: PipelineDefinition, spans: ResolvedSpans | undefined): SplitSpec {
  if (spans?.eval) {
    return { kind: 'time', column: spans.column, trainBefore: spans.eval.from, evalBefore: spans.eval.to };
  }
  if (!definition.split) {
    throw new Error(
      definition.window
        ? 'the window has an eval part, but its spans were not resolved'
        : 'the definition has no split (validation requires one without a window eval part)',
    );
  }
  return definition.split;
}
