/**
 * Request validation against a model's stored signature, hand-written for the hot path: no schema library per
 * instance, one pass over the signature's precomputed input list per instance, and no allocation unless something
 * is wrong.
 *
 * The contract (what `POST /v1/models/{name}/predict` accepts):
 * - the body is `{ "instances": [ {feature: value, ...}, ... ] }` or `{ "instance": {...} }`, optionally with
 *   `"version": <positive integer>` or `"alias": "<name>"` (not both);
 * - every signature input is a key of every instance; `null` is the missing value (the graph imputes it);
 * - numeric inputs (double, float) take a JSON number or null; string inputs take a JSON string or null. Numbers are
 *   NOT accepted for string inputs (nor numeric strings for numeric inputs): a client that sends the wrong type has
 *   a bug worth a 400, and guessing would silently change what the model sees;
 * - keys that are not inputs are ignored (ids, timestamps a caller keeps with its rows).
 */
import type { ModelSignature } from '../schema/registry.js';
import type { FieldProblem } from '../server/errors.js';
import { DomainError } from '../core/errors.js';

/** onnxruntime's element type for each signature type serving can feed. */
const TENSOR_TYPES = { double: 'float64', float: 'float32', string: 'string' } as const;
export type FeedType = (typeof TENSOR_TYPES)[keyof typeof TENSOR_TYPES];

/** One input of the graph, prepared once at load time. */
export interface CompiledInput {
  readonly name: string;
  /** True for double and float inputs; false for string inputs. */
  readonly numeric: boolean;
  readonly tensorType: FeedType;
}

/** A signature ready for validation and feeding: the input list is walked as is for every instance. */
export interface CompiledSignature {
  readonly inputs: readonly CompiledInput[];
  /** The graph outputs a prediction needs, in the order they are fetched. */
  readonly fetches: readonly string[];
  readonly task: 'classification' | 'regression';
}

export const OUTPUT_LABEL = 'label';
export const OUTPUT_PROBABILITIES = 'probabilities';
export const OUTPUT_PREDICTION = 'prediction';

/** Thrown when a registered signature cannot be served (an input type serving does not feed, no known output). */
export class UnservableSignatureError extends DomainError {
  override readonly name = 'UnservableSignatureError';
  constructor(message: string) {
    super('invalid', message);
  }
}

/**
 * Prepares `signature` for serving.
 *
 * @throws UnservableSignatureError when an input is not double, float or string, or the outputs are neither
 *   `label` + `probabilities` (classification) nor `prediction` (regression).
 */
export function compileSignature(signature: ModelSignature): CompiledSignature {
  const inputs = signature.inputs.map((field): CompiledInput => {
    const tensorType = (TENSOR_TYPES as Record<string, FeedType | undefined>)[field.type];
    if (tensorType === undefined) {
      throw new UnservableSignatureError(
        `input ${field.name} has type ${field.type}; serving feeds double, float and string`,
      );
    }
    return { name: field.name, numeric: tensorType !== 'string', tensorType };
  });
  if (inputs.length === 0) throw new UnservableSignatureError('the signature has no inputs');
  const outputs = new Set(signature.outputs.map((o) => o.name));
  if (outputs.has(OUTPUT_LABEL) && outputs.has(OUTPUT_PROBABILITIES)) {
    return { inputs, fetches: [OUTPUT_LABEL, OUTPUT_PROBABILITIES], task: 'classification' };
  }
  if (outputs.has(OUTPUT_PREDICTION)) return { inputs, fetches: [OUTPUT_PREDICTION], task: 'regression' };
  throw new UnservableSignatureError(
    `the signature's outputs (${[...outputs].join(', ')}) are neither label + probabilities nor prediction`,
  );
}

/** One instance: raw feature values keyed by input name. */
export type Instance = Readonly<Record<string, unknown>>;

/** A predict request body after its shape was checked (the instances' features are checked per model). */
export interface PredictRequest {
  readonly instances: readonly Instance[];
  /** True when the body used `instance` (one object): problems are reported under `instance`, not `instances[0]`. */
  readonly single: boolean;
  readonly version?: number;
  readonly alias?: string;
  /** Score a version named by `version` or `alias` although it may not serve (needs the deploy scope). */
  readonly allowUnblessed?: boolean;
}

/** Why a request was refused: the HTTP status, a stable code and one entry per problem (the first names the field). */
export class PredictRequestError extends DomainError {
  override readonly name = 'PredictRequestError';
  constructor(
    status: 400 | 413,
    code: string,
    readonly problems: readonly FieldProblem[],
    /** How many problems there were, when more than `problems` lists. */
    total = problems.length,
  ) {
    const first = problems[0];
    const more = total > 1 ? ` (and ${total - 1} more)` : '';
    const message = first ? `${first.path === '' ? 'body' : first.path}: ${first.problem}${more}` : 'invalid request';
    super(status === 413 ? 'too_large' : 'invalid', message, { code, details: problems });
  }
}

const ALIAS = /^[A-Za-z][A-Za-z0-9._-]{0,63}$/;
/** Problems reported per request at most; the rest are counted in the message only as "and N more". */
const MAX_PROBLEMS = 20;

function invalid(path: string, problem: string): PredictRequestError {
  return new PredictRequestError(400, 'invalid_request', [{ location: 'body', path, problem }]);
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  const type = typeof value;
  return type === 'object' ? 'an object' : `a ${type}`;
}

/**
 * Checks the body's shape: where the instances are, how many, and which version is addressed.
 *
 * @throws PredictRequestError 400 for a body that is not an object, a missing or malformed `instances`/`instance`,
 *   both given, an empty list, a `version` that is not a positive integer, an invalid `alias`, or both; 413 naming
 *   `instances` when there are more than `maxInstances`.
 */
export function parsePredictBody(body: unknown, maxInstances: number): PredictRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalid('', `expected an object with instances or instance, got ${describeType(body)}`);
  }
  const b = body as Record<string, unknown>;
  const list = b.instances;
  const one = b.instance;
  let instances: readonly Instance[];
  let single = false;
  if (list !== undefined) {
    if (one !== undefined) throw invalid('instance', 'give instances or instance, not both');
    if (!Array.isArray(list)) throw invalid('instances', `expected an array of objects, got ${describeType(list)}`);
    if (list.length === 0) throw invalid('instances', 'expected at least one instance');
    if (list.length > maxInstances) {
      throw new PredictRequestError(413, 'too_many_instances', [
        {
          location: 'body',
          path: 'instances',
          problem: `${list.length} instances; at most ${maxInstances} per request`,
        },
      ]);
    }
    instances = list as Instance[];
  } else if (one !== undefined) {
    instances = [one as Instance];
    single = true;
  } else {
    throw invalid('instances', 'missing: give instances (an array of objects) or instance (one object)');
  }

  const allow = b.allowUnblessed;
  if (allow !== undefined && allow !== null && typeof allow !== 'boolean') {
    throw invalid('allowUnblessed', `expected a boolean, got ${describeType(allow)}`);
  }
  const flags = allow === true ? { allowUnblessed: true } : {};
  const version = b.version;
  const alias = b.alias;
  if (version !== undefined && version !== null) {
    if (typeof version !== 'number' || !Number.isInteger(version) || version < 1 || version > 2_147_483_647) {
      throw invalid('version', 'expected a positive integer version number');
    }
    if (alias !== undefined && alias !== null) throw invalid('alias', 'give version or alias, not both');
    return { instances, single, version, ...flags };
  }
  if (alias !== undefined && alias !== null) {
    if (typeof alias !== 'string' || !ALIAS.test(alias)) {
      throw invalid('alias', 'expected an alias: a letter, then letters, digits and ._- (at most 64)');
    }
    return { instances, single, alias, ...flags };
  }
  return { instances, single, ...flags };
}

/**
 * Checks every instance against the signature's inputs.
 *
 * @throws PredictRequestError 400 listing up to 20 problems, each naming its field (`instances[3].distance: missing`).
 */
export function validateInstances(signature: CompiledSignature, request: PredictRequest): void {
  const { inputs } = signature;
  const instances = request.instances;
  const n = inputs.length;
  for (let i = 0; i < instances.length; i++) {
    const instance = instances[i];
    if (typeof instance !== 'object' || instance === null || Array.isArray(instance)) {
      throw collectProblems(signature, request, i);
    }
    for (let j = 0; j < n; j++) {
      const input = inputs[j]!;
      const value = instance[input.name];
      if (value === null) continue;
      if (input.numeric ? typeof value !== 'number' : typeof value !== 'string') {
        throw collectProblems(signature, request, i);
      }
    }
  }
}

/** The slow path, once something is known to be wrong: every problem from instance `from` on, up to the cap. */
function collectProblems(signature: CompiledSignature, request: PredictRequest, from: number): PredictRequestError {
  const problems: FieldProblem[] = [];
  let total = 0;
  const add = (path: string, problem: string) => {
    total++;
    if (problems.length < MAX_PROBLEMS) problems.push({ location: 'body', path, problem });
  };
  const instances = request.instances;
  for (let i = from; i < instances.length; i++) {
    const where = request.single ? 'instance' : `instances[${i}]`;
    const instance = instances[i];
    if (typeof instance !== 'object' || instance === null || Array.isArray(instance)) {
      add(where, `expected an object of feature values, got ${describeType(instance)}`);
      continue;
    }
    for (const input of signature.inputs) {
      // Own properties only: a feature named like an Object.prototype member (constructor, toString) is not "present".
      const value = Object.hasOwn(instance, input.name) ? instance[input.name] : undefined;
      if (value === undefined) add(`${where}.${input.name}`, 'missing');
      else if (value === null) continue;
      else if (input.numeric && typeof value !== 'number') {
        add(`${where}.${input.name}`, `expected a number or null, got ${describeType(value)}`);
      } else if (!input.numeric && typeof value !== 'string') {
        add(`${where}.${input.name}`, `expected a string or null, got ${describeType(value)}`);
      }
    }
  }
  return new PredictRequestError(400, 'invalid_request', problems, total);
}
