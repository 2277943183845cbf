/**
 * Workflow histories to and from Temporal's JSON history format (what `temporal workflow show --output json` and
 * the Web UI download write), for the replay fixtures.
 *
 * Same conversion as `historyToJSON` / `historyFromJSON` of `@temporalio/common/lib/proto-utils`, which fail in
 * this install with "type must be a Type": npm gives @temporalio/common and @temporalio/proto separate copies of
 * protobufjs (another dependency holds protobufjs 7 at the top level), and the protojson helpers of one copy
 * refuse the reflection types built by the other. Here the helpers are loaded from the copy @temporalio/proto
 * itself resolves, whatever the layout.
 */
import { createRequire } from 'node:module';
import type { History } from '@temporalio/common/lib/proto-utils.js';
import type { temporal } from '@temporalio/proto';

export type { History };

interface ReflectionType {
  readonly fullName: string;
}
interface ProtoRoot {
  lookupType(name: string): ReflectionType;
}
interface ProtoJson {
  toJson(type: ReflectionType, message: object): unknown;
  fromJson(type: ReflectionType, json: unknown, options?: { ignoreUnknownFields?: boolean }): object | null;
}

const require = createRequire(import.meta.url);
const protoMain = require.resolve('@temporalio/proto');
// CommonJS: under ESM interop the patched root loses its reflection methods.
const root = require(protoMain) as ProtoRoot & { temporal: typeof temporal };
const protojson = createRequire(protoMain)('protobufjs/ext/protojson') as ProtoJson;
const historyType = root.lookupType('temporal.api.history.v1.History');

/** The history as pretty-printed proto JSON (a trailing newline included). */
export function historyToJSON(history: History): string {
  const message = root.temporal.api.history.v1.History.fromObject(history);
  return `${JSON.stringify(protojson.toJson(historyType, message), null, 2)}\n`;
}

/** A history from proto JSON; unknown fields (from a newer server) are ignored. */
export function historyFromJSON(json: unknown): History {
  if (typeof json !== 'object' || json === null || !Array.isArray((json as { events?: unknown }).events)) {
    throw new TypeError('not a workflow history: expected an object with an array of events');
  }
  const history = protojson.fromJson(historyType, json, { ignoreUnknownFields: true });
  if (!history) throw new TypeError('not a workflow history');
  return history as History;
}
