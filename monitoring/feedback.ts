/**
 * Ground truth (issue 16): the labels callers send back for logged predictions, by request id, validated against the
 * model version that answered each request, and stored once (storage/feedback-store.ts). The monitor joins them to
 * the logged predictions to compute live performance.
 *
 * The contract of `POST /v1/feedback`:
 * - one label per request id; the label labels every instance of that request (send one instance per request when
 *   each row has its own truth);
 * - a request id with no row in `prediction_logs` is *unknown*: reported back, not stored, never dropped silently.
 *   Logs are written in the background, so a prediction answered a moment ago may be unknown for a moment: send it
 *   again later;
 * - classification: the label is one of the version's classes (the `classes` of its predict answers), given as the
 *   class itself or as its text form (`"true"` for the class `true`, `1` or `"1"` for the class `"1"` or `1`); it is
 *   stored as the class itself, so it compares equal to the logged `label`. A graph that records no classes (its
 *   answers give class indices) takes any string, number or boolean as sent;
 * - regression: the label is a JSON number (not a numeric string, as for predict's numeric inputs: guessing hides a
 *   client's bug);
 * - a request id already labelled with the same (canonical) label is reported as already recorded; with another
 *   label, or twice in one batch with two labels, the whole call is refused (409) naming the field, and nothing of
 *   it is written. A wrong label is a 400 naming the field, and nothing is written either.
 */
import { DomainError, type DomainErrorOptions } from '../core/errors.js';
import type { ModelSignature } from '../schema/index.js';
import { readClasses } from '../serving/load-model.js';
import type { ClassLabel } from '../serving/loaded-model.js';
import type { ArtifactStore } from '../storage/artifact-store.js';
import type { FeedbackLabel, FeedbackStore, LoggedVersion } from '../storage/feedback-store.js';

export type { FeedbackLabel };

/** Most labels one call records. */
export const FEEDBACK_BATCH_LIMIT = 10_000;

/** Field problems listed in an error's details; the message counts the rest. */
const MAX_LISTED_PROBLEMS = 100;
/** Classes named in a refusal. */
const MAX_LISTED_CLASSES = 20;

export interface FeedbackItem {
  readonly requestId: string;
  readonly label: FeedbackLabel;
}

/** The answer to a call: counts over distinct request ids (a request id repeated with its label counts once). */
export interface FeedbackAnswer {
  /** Labels this call stored. */
  readonly recorded: number;
  /** Request ids that already had this label (from an earlier call): nothing changed for them. */
  readonly alreadyRecorded: number;
  /** Request ids with no logged prediction (yet): not stored; send them again once their predictions are logged. */
  readonly unknown: readonly string[];
}

/** One refused field, in the shape of the API's `invalid_request` details. */
export interface FeedbackProblem {
  readonly location: 'body';
  /** `label` for a single label, `items[3].label` in a batch. */
  readonly path: string;
  readonly problem: string;
}

function summarize(problems: readonly FeedbackProblem[]): { message: string; details: FeedbackProblem[] } {
  const first = problems[0]!;
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
  return { message: `${first.path}: ${first.problem}${more}`, details: problems.slice(0, MAX_LISTED_PROBLEMS) };
}

/** Thrown when a label does not fit the task of the model version that answered its request; nothing was written. */
export class InvalidFeedbackError extends DomainError {
  override readonly name = 'InvalidFeedbackError';
  constructor(problems: readonly FeedbackProblem[], options?: DomainErrorOptions) {
    const { message, details } = summarize(problems);
    super('invalid', `Invalid request: body.${message}`, { details, ...options });
  }
}

/**
 * Thrown when a request id already has another label, or is given two labels in one call: a recorded label is never
 * changed, and nothing of the call was written.
 */
export class FeedbackConflictError extends DomainError {
  override readonly name = 'FeedbackConflictError';
  constructor(problems: readonly FeedbackProblem[], options?: DomainErrorOptions) {
    const { message, details } = summarize(problems);
    super('conflict', `Conflicting label: body.${message}; nothing was recorded`, {
      code: 'feedback_label_conflict',
      details,
      ...options,
    });
  }
}

/** The labels a model version's predictions are compared with. */
export type LabelSpace =
  | { readonly task: 'classification'; readonly classes: readonly ClassLabel[] | undefined }
  | { readonly task: 'regression' }
  /** The version was deleted and none of its logged rows succeeded: any label is taken as sent. */
  | { readonly task: 'unknown' };

/** The task a registered signature serves (the outputs serving/signature.ts fetches), or undefined. */
export function taskOfSignature(signature: ModelSignature): 'classification' | 'regression' | undefined {
  const outputs = new Set(signature.outputs.map((o) => o.name));
  if (outputs.has('label') && outputs.has('probabilities')) return 'classification';
  if (outputs.has('prediction')) return 'regression';
  return undefined;
}

function describeType(label: FeedbackLabel): string {
  return typeof label === 'string' ? 'a string' : typeof label === 'number' ? 'a number' : 'a boolean';
}

function listClasses(classes: readonly ClassLabel[]): string {
  const shown = classes.slice(0, MAX_LISTED_CLASSES).map((c) => JSON.stringify(c));
  const more = classes.length > MAX_LISTED_CLASSES ? `, ... (${classes.length} in all)` : '';
  return `${shown.join(', ')}${more}`;
}

/**
 * The label as stored for a version with this label space, or why it does not fit. A class given by its text form
 * becomes the class itself (`"true"` → `true`), so stored labels compare equal to logged ones.
 *
 * @example
 * canonicalLabel({ task: 'classification', classes: [false, true] }, 'true'); // { value: true }
 * canonicalLabel({ task: 'regression' }, '3.5'); // { problem: 'a regression target is a number, got a string' }
 */
export function canonicalLabel(
  space: LabelSpace,
  label: FeedbackLabel,
): { readonly value: FeedbackLabel } | { readonly problem: string } {
  switch (space.task) {
    case 'regression':
      return typeof label === 'number' && Number.isFinite(label)
        ? { value: label }
        : { problem: `a regression target is a number, got ${describeType(label)}` };
    case 'classification': {
      const classes = space.classes;
      if (classes === undefined || classes.length === 0) return { value: label };
      if (classes.includes(label)) return { value: label };
      const text = String(label);
      const byText = classes.find((c) => String(c) === text);
      if (byText !== undefined) return { value: byText };
      return { problem: `${JSON.stringify(label)} is not one of the model's classes (${listClasses(classes)})` };
    }
    case 'unknown':
      return { value: label };
  }
}

/** The classes of a registered version (the graph's metadata), or undefined when it records none. */
export type ClassesOf = (version: {
  readonly versionId: string;
  readonly onnxUri: string;
  readonly sha256: string;
}) => Promise<readonly ClassLabel[] | undefined>;

/**
 * Reads a version's classes from its ONNX graph's metadata (`temporal-mlops.classes`), once per version and process:
 * versions are immutable, so the answer is kept (the `cacheSize` most recently read). A graph that is missing or does
 * not match its sha256 gives undefined (labels are then not checked against classes), and is asked again next time;
 * S3 being down is an error (a 503).
 */
export function onnxClassesReader(artifacts: Pick<ArtifactStore, 'get'>, options: { cacheSize?: number } = {}) {
  const cacheSize = options.cacheSize ?? 256;
  const cache = new Map<string, Promise<readonly ClassLabel[] | undefined>>();
  const read: ClassesOf = (version) => {
    const cached = cache.get(version.versionId);
    if (cached) {
      cache.delete(version.versionId);
      cache.set(version.versionId, cached);
      return cached;
    }
    const reading = artifacts.get({ uri: version.onnxUri, sha256: version.sha256 }).then(
      (bytes) => readClasses(bytes),
      (error: unknown) => {
        cache.delete(version.versionId);
        if (error instanceof DomainError && (error.kind === 'not_found' || error.kind === 'integrity'))
          return undefined;
        throw error;
      },
    );
    cache.set(version.versionId, reading);
    while (cache.size > cacheSize) cache.delete(cache.keys().next().value!);
    return reading;
  };
  return read;
}

export interface FeedbackRecorderDeps {
  readonly store: FeedbackStore;
  readonly classesOf: ClassesOf;
}

export interface RecordFeedbackOptions {
  /** Who sent the labels (the API key's name). */
  readonly actor: string;
  /** Where item `index` is in the request: '' for a body that is one label, `items[3]` in a batch. */
  readonly fieldOf: (index: number) => string;
}

const labelField = (prefix: string): string => (prefix === '' ? 'label' : `${prefix}.label`);

/** Records ground truth with the checks of the contract above (see the module comment). */
export class FeedbackRecorder {
  constructor(private readonly deps: FeedbackRecorderDeps) {}

  /**
   * Validates and stores `items`, all or nothing. Idempotent: the same call again records nothing and answers
   * every known request id as already recorded.
   *
   * @throws InvalidFeedbackError (400) when there are more than {@link FEEDBACK_BATCH_LIMIT} items or a label does
   *   not fit its version's task or classes; FeedbackConflictError (409) when a request id has, or is given, another
   *   label. Nothing is written when either is thrown.
   */
  async record(items: readonly FeedbackItem[], options: RecordFeedbackOptions): Promise<FeedbackAnswer> {
    if (items.length > FEEDBACK_BATCH_LIMIT) {
      throw new InvalidFeedbackError([
        { location: 'body', path: 'items', problem: `at most ${FEEDBACK_BATCH_LIMIT} labels per call` },
      ]);
    }
    const ids = [...new Set(items.map((item) => item.requestId))];
    const logged = await this.deps.store.loggedVersions(ids);
    const spaces = await this.labelSpaces(logged);

    // 1. Each label against the version(s) that answered its request.
    const problems: FeedbackProblem[] = [];
    const canonical: FeedbackLabel[] = [];
    items.forEach((item, index) => {
      canonical[index] = item.label;
      const versions = logged.get(item.requestId);
      if (!versions) return;
      const answering = versions.some((v) => !v.shadowOnly) ? versions.filter((v) => !v.shadowOnly) : versions;
      for (const [i, version] of answering.entries()) {
        const fit = canonicalLabel(spaces.get(version.versionId)!, item.label);
        if ('problem' in fit) {
          problems.push({
            location: 'body',
            path: labelField(options.fieldOf(index)),
            problem: `${fit.problem}; request ${item.requestId} was answered by ${version.model} version ${version.version}`,
          });
          break;
        }
        if (i === 0) canonical[index] = fit.value;
      }
    });
    if (problems.length > 0) throw new InvalidFeedbackError(problems);

    // 2. One label per request id within the call.
    const first = new Map<string, number>();
    const conflicts: FeedbackProblem[] = [];
    items.forEach((item, index) => {
      const earlier = first.get(item.requestId);
      if (earlier === undefined) {
        first.set(item.requestId, index);
      } else if (canonical[earlier] !== canonical[index]) {
        conflicts.push({
          location: 'body',
          path: labelField(options.fieldOf(index)),
          problem:
            `request ${item.requestId} is labelled ${JSON.stringify(items[earlier]!.label)} by ` +
            `${labelField(options.fieldOf(earlier))} and ${JSON.stringify(item.label)} here`,
        });
      }
    });
    if (conflicts.length > 0) throw new FeedbackConflictError(conflicts);

    // 3. Stored, all or nothing, against the labels already recorded.
    const known = [...first.entries()]
      .filter(([requestId]) => logged.has(requestId))
      .map(([requestId, index]) => ({ requestId, label: canonical[index]! }));
    const outcome = await this.deps.store.record(known, options.actor);
    if (!outcome.ok) {
      throw new FeedbackConflictError(
        outcome.conflicts
          .map((c) => ({ ...c, index: first.get(c.requestId)! }))
          .sort((a, b) => a.index - b.index)
          .map((c) => ({
            location: 'body' as const,
            path: labelField(options.fieldOf(c.index)),
            problem:
              `request ${c.requestId} already has the label ${JSON.stringify(c.stored)}, ` +
              `not ${JSON.stringify(items[c.index]!.label)}; a recorded label is not changed`,
          })),
      );
    }
    return {
      recorded: outcome.inserted.length,
      alreadyRecorded: outcome.unchanged.length,
      unknown: ids.filter((id) => !logged.has(id)),
    };
  }

  /** The label space of every version that logged one of the requests, its classes read once per version. */
  private async labelSpaces(logged: ReadonlyMap<string, readonly LoggedVersion[]>): Promise<Map<string, LabelSpace>> {
    const versions = new Map<string, LoggedVersion>();
    for (const list of logged.values()) for (const v of list) versions.set(v.versionId, v);
    const entries = await Promise.all(
      [...versions.values()].map(async (v): Promise<[string, LabelSpace]> => {
        const task = (v.registered && taskOfSignature(v.registered.signature)) ?? v.loggedTask;
        if (task === 'regression') return [v.versionId, { task }];
        if (task === 'classification') {
          const classes = v.registered
            ? await this.deps.classesOf({ versionId: v.versionId, ...v.registered })
            : undefined;
          return [v.versionId, { task, classes }];
        }
        return [v.versionId, { task: 'unknown' }];
      }),
    );
    return new Map(entries);
  }
}
