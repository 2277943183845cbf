/**
 * Text that PostgreSQL cannot store: a NUL character (refused by `text` and `jsonb` columns alike) or an unpaired
 * UTF-16 surrogate (refused by `jsonb`, silently replaced in `text`). Both are valid in JSON, so a request that
 * passes its schema can carry them into a write, where the database's refusal would be a 500. The validation hook
 * refuses them first, naming the field.
 */

/** A NUL, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one. */
// eslint-disable-next-line no-control-regex -- finding the NUL character is the point
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Whether `text` holds a character PostgreSQL cannot store. */
function isUnstorable(text: string): boolean {
  return UNSTORABLE.test(text);
}

/** Where in a validated value an unstorable string (or object key) is, and what is wrong with it. */
export interface UnstorableText {
  /** Dotted path, with array indices in brackets (`thresholds.reason`, `features[2].name`); '' for the value itself. */
  readonly path: string;
  /** The same path as keys (`['features', 2, 'name']`), for callers that write paths their own way; at most 33. */
  readonly keys: readonly (string | number)[];
  readonly problem: string;
}

const PROBLEM = 'must not contain NUL characters (\\u0000) or unpaired surrogates: they cannot be stored';

/** A value on the walk's stack, with the way back to the root (no path is built unless one is reported). */
interface Step {
  readonly value: unknown;
  readonly parent: Step | undefined;
  readonly key: string | number | undefined;
}

/** Keys of a reported path beyond this are cut, with `…` in their place. */
const MAX_KEYS = 32;

function found(step: Step, problem: string): UnstorableText {
  const keys: (string | number)[] = [];
  for (let s: Step | undefined = step; s?.key !== undefined; s = s.parent) keys.push(s.key);
  keys.reverse();
  // A path 100,000 levels deep is no use in a message: the first levels say where it is.
  if (keys.length > MAX_KEYS) keys.splice(MAX_KEYS, keys.length - MAX_KEYS, '…');
  const path = keys.reduce<string>(
    (out, key) => (typeof key === 'number' ? `${out}[${key}]` : out === '' ? key : `${out}.${key}`),
    '',
  );
  return { path, keys, problem };
}

/**
 * The first string or object key in `value` that PostgreSQL cannot store, or undefined when there is none. Walks
 * with an explicit stack and builds no path until it finds one, so a deeply nested value (a JSON body can nest
 * 100,000 levels) costs linear time and cannot overflow the call stack.
 */
export function findUnstorableText(value: unknown): UnstorableText | undefined {
  const stack: Step[] = [{ value, parent: undefined, key: undefined }];
  for (let step = stack.pop(); step !== undefined; step = stack.pop()) {
    const v = step.value;
    if (typeof v === 'string') {
      if (isUnstorable(v)) return found(step, PROBLEM);
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i] as unknown, parent: step, key: i });
    } else if (typeof v === 'object' && v !== null) {
      const entries = Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, child] = entries[i]!;
        const next = { value: child, parent: step, key };
        if (isUnstorable(key)) return found(next, `its name ${PROBLEM}`);
        stack.push(next);
      }
    }
  }
  return undefined;
}
