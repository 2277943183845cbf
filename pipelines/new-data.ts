/**
 * New-data triggers, outside workflows: which prefix a pipeline watches, which objects count, and the one way new
 * objects lead to a run: record them (new once per key + ETag), then signal the pipeline's settle workflow
 * (workflows/new-data.ts) with signalWithStart. The S3 webhook (server/routes/data-events.ts) and the polling
 * fallback's activity (activities/new-data.ts) both go through {@link noteNewObjects}.
 */
import type { Client } from '@temporalio/client';
import { isObjectAllowed, type DataAccessPolicy } from '../data/access-policy.js';
import { formatOfName, globMatcher, hasGlob } from '../data/sources.js';
import { sha256Hex } from '../storage/content-hash.js';
import type { SeenBy, WatchedObjectRef, WatchedObjectStore } from '../storage/watched-object-store.js';
import { byKeyThenEtag } from '../storage/watched-object-store.js';
import { newDataSignal, newDataTrigger, newDataWorkflowId } from '../workflows/index.js';
import { pipelineDefinitionSchema, type PipelineDefinition } from './definition.js';

/** A pipeline's watched prefix, resolved from its definition's `triggers.newData`. */
export interface WatchedPrefix {
  readonly pipeline: string;
  readonly bucket: string;
  /** A raw S3 key prefix (as S3's own notification filters use it); `''`: the whole bucket. */
  readonly prefix: string;
  /** `s3://bucket/prefix`: the trigger's source. */
  readonly uri: string;
  /** Which keys under the prefix count: all (an explicit prefix), the source's data files, or its glob. */
  readonly matches: (key: string) => boolean;
  readonly settleSeconds: number;
  readonly pollEverySeconds?: number | undefined;
}

/** Hidden files and Hadoop-style markers (`_SUCCESS`), which a folder source never reads. */
function isHiddenName(key: string): boolean {
  const base = key.slice(key.lastIndexOf('/') + 1);
  return base.startsWith('.') || base.startsWith('_');
}

function isDataFile(key: string): boolean {
  return !isHiddenName(key) && formatOfName(key) !== undefined;
}

function splitS3Uri(uri: string): { bucket: string; key: string } {
  const rest = uri.slice('s3://'.length);
  const slash = rest.indexOf('/');
  return slash < 0 ? { bucket: rest, key: '' } : { bucket: rest.slice(0, slash), key: rest.slice(slash + 1) };
}

/**
 * What a definition watches, or undefined without `triggers.newData` (or with neither a prefix nor an S3 source).
 * An explicit `prefix` counts every object under it; the default, the source's own location, counts what the
 * source would read: the objects its glob matches, the one object it names, or the data files of its folder.
 */
export function watchOf(definition: PipelineDefinition): WatchedPrefix | undefined {
  const newData = definition.triggers.newData;
  if (!newData) return undefined;
  const base = {
    pipeline: definition.name,
    settleSeconds: newData.settleSeconds,
    pollEverySeconds: newData.pollEverySeconds,
  };
  if (newData.prefix) {
    const { bucket, key } = splitS3Uri(newData.prefix);
    return { ...base, bucket, prefix: key, uri: newData.prefix, matches: () => true };
  }
  const source = 'uri' in definition.source ? definition.source.uri : undefined;
  if (!source?.startsWith('s3://')) return undefined;
  const { bucket, key } = splitS3Uri(source);
  let prefix: string;
  let matches: (key: string) => boolean;
  if (hasGlob(key)) {
    const first = key.search(/[*?]/);
    prefix = key.slice(0, key.lastIndexOf('/', first) + 1);
    matches = globMatcher(key);
  } else if (key === '' || key.endsWith('/') || formatOfName(key) === undefined) {
    prefix = key === '' || key.endsWith('/') ? key : `${key}/`;
    matches = isDataFile;
  } else {
    prefix = key;
    matches = (candidate) => candidate === key;
  }
  return { ...base, bucket, prefix, uri: `s3://${bucket}/${prefix}`, matches };
}

/** {@link watchOf} over a stored (JSON) definition; undefined when it no longer parses or watches nothing. */
export function watchOfStored(definition: unknown): WatchedPrefix | undefined {
  const parsed = pipelineDefinitionSchema.safeParse(definition);
  return parsed.success ? watchOf(parsed.data) : undefined;
}

/** Whether an object is one the watch counts: in its bucket, under its prefix, matched, not a folder marker. */
export function isWatched(watch: WatchedPrefix, bucket: string, key: string): boolean {
  return bucket === watch.bucket && key.startsWith(watch.prefix) && !key.endsWith('/') && watch.matches(key);
}

/** Whether the data access policy lets the platform read the watched prefix (a watch outside it sees nothing). */
export function isWatchAllowed(policy: DataAccessPolicy, watch: WatchedPrefix): boolean {
  return isObjectAllowed(policy, watch.bucket, watch.prefix);
}

/**
 * The trigger's dedupe key (and the run's idempotency key) for a claimed set: the same set always gives the same
 * key, whatever order it was seen in.
 */
export function newDataDedupeKey(pipeline: string, objects: readonly WatchedObjectRef[]): string {
  const list = [...objects]
    .sort(byKeyThenEtag)
    .map((o) => `${o.key}@${o.etag}`)
    .join('\n');
  return `new_data:${pipeline}:${sha256Hex(list)}`;
}

/** Temporal as the signaller needs it: the client and the main task queue, where the settle workflow runs. */
export interface NewDataSignaller {
  readonly client: Client;
  readonly taskQueue: string;
}

/**
 * Signals the pipeline's settle workflow, starting it when none runs (signalWithStart under its fixed id). Safe to
 * call any number of times: a signal with `added` > 0 restarts the settle period, any signal makes sure the waiting
 * objects are claimed by a cycle that follows it.
 */
export async function signalNewData(temporal: NewDataSignaller, watch: WatchedPrefix, added: number): Promise<void> {
  const notice = { settleSeconds: watch.settleSeconds, source: watch.uri };
  await temporal.client.workflow.signalWithStart(newDataTrigger, {
    workflowId: newDataWorkflowId(watch.pipeline),
    taskQueue: temporal.taskQueue,
    args: [{ pipeline: watch.pipeline, ...notice }],
    signal: newDataSignal,
    signalArgs: [{ ...notice, added }],
  });
}

/** What noting a batch of objects did for one pipeline. */
export interface NotedObjects {
  readonly pipeline: string;
  /** Objects seen for the first time. */
  readonly added: number;
  /** Objects of the batch no trigger has claimed yet (the added ones included). */
  readonly unclaimed: number;
  /** Whether the settle workflow was signalled (it is whenever `unclaimed` > 0). */
  readonly signalled: boolean;
}

/**
 * Records objects seen under a pipeline's watched prefix and, when any of them is unclaimed, signals its settle
 * workflow. Retriable: a repeated call records nothing twice, and signals again only while the objects wait for a
 * trigger (so a signal lost to an outage is sent by the next notification or poll of them).
 */
export async function noteNewObjects(
  deps: { readonly watched: WatchedObjectStore; readonly temporal: NewDataSignaller },
  watch: WatchedPrefix,
  objects: readonly WatchedObjectRef[],
  seenBy: SeenBy,
): Promise<NotedObjects> {
  if (objects.length === 0) return { pipeline: watch.pipeline, added: 0, unclaimed: 0, signalled: false };
  const recorded = await deps.watched.recordObjects(watch.pipeline, objects, seenBy);
  if (recorded.unclaimed > 0) await signalNewData(deps.temporal, watch, recorded.added.length);
  return {
    pipeline: watch.pipeline,
    added: recorded.added.length,
    unclaimed: recorded.unclaimed,
    signalled: recorded.unclaimed > 0,
  };
}
