/**
 * `POST /v1/events/s3`: bucket notifications from MinIO's webhook target (or S3 through a forwarder), the push side
 * of new-data triggers. Each created object is matched against the watched prefixes of the pipelines whose newest
 * definition has `triggers.newData`, recorded once per key + ETag, and the pipelines that got unclaimed objects have
 * their settle workflow signalled (pipelines/new-data.ts); the settle workflow starts one run per burst.
 *
 * MinIO sends its target's `auth_token` as the Authorization header: a bare token gets `Bearer ` put in front, a
 * value with a scheme (`Bearer mlk_...`) is sent as it is, so either form of a `trigger`-scoped key works.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { DataAccessPolicy } from '../../data/access-policy.js';
import {
  isWatchAllowed,
  isWatched,
  noteNewObjects,
  watchOfStored,
  type NewDataSignaller,
  type NotedObjects,
  type WatchedPrefix,
} from '../../pipelines/new-data.js';
import {
  decodeS3Key,
  isCreateEvent,
  isDecodableKey,
  matchObjects,
  objectEventsOf,
} from '../../pipelines/s3-notifications.js';
import type { WatchedObjectRef, WatchedObjectStore } from '../../storage/watched-object-store.js';
import { scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { createRouter } from '../router.js';
import { findUnstorableText } from '../storable-text.js';
import { errorResponse, jsonResponse } from './common.js';

export interface DataEventsDeps {
  readonly watched: WatchedObjectStore;
  /** Signals the settle workflows: the Temporal client and the main task queue. */
  readonly temporal: NewDataSignaller;
  /** Only prefixes the data access policy allows are watched. */
  readonly policy: DataAccessPolicy;
  /**
   * The watched prefixes, cached: pass the one whose {@link WatchList.invalidate} runs when a definition is saved
   * (server/app.ts), so a new or changed watch counts from the next notification. Default: one of its own.
   */
  readonly watchList?: WatchList;
  /** How long the list of watching pipelines is reused between notifications, ms; default 2000 (0: every time). */
  readonly watchCacheMs?: number;
}

/** The watched prefixes of every pipeline, re-read from the pipeline versions at most every `ttlMs`. */
export interface WatchList {
  get(): Promise<WatchedPrefix[]>;
  /** Forgets the cached list: the next {@link get} reads the definitions again (call it when one is saved). */
  invalidate(): void;
}

/** Records per notification: MinIO sends one, S3 a handful; a bound keeps one request's work small. */
const MAX_RECORDS = 1000;

const recordSchema = z
  .object({
    eventName: z.string().min(1).max(200).openapi({ example: 's3:ObjectCreated:Put' }),
    s3: z.object({
      bucket: z.object({ name: z.string().min(1).max(63) }),
      object: z.object({
        key: z
          .string()
          .min(1)
          .max(3072)
          .refine(isDecodableKey, 'not a valid URL-encoded key')
          // `%00` decodes to a NUL, which PostgreSQL cannot store: refused here, naming the field, not a 500 later.
          .refine(
            (key) => !isDecodableKey(key) || findUnstorableText(decodeS3Key(key)) === undefined,
            'decodes to text that cannot be stored (a NUL character, %00, or an unpaired surrogate)',
          )
          .openapi({ description: 'URL-encoded, as S3 and MinIO send it.', example: 'landing/2001-04.csv' }),
        eTag: z.string().min(1).max(200).optional(),
        size: z.number().int().min(0).optional(),
      }),
    }),
  })
  .superRefine((record, ctx) => {
    if (isCreateEvent(record.eventName) && record.s3.object.eTag === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['s3', 'object', 'eTag'],
        message: 'an ObjectCreated record needs the eTag',
      });
    }
  });

const notificationSchema = z
  .object({
    EventName: z.string().max(200).optional(),
    Key: z.string().max(4000).optional(),
    Records: z.array(recordSchema).min(1).max(MAX_RECORDS),
  })
  .openapi('S3Notification', {
    description:
      'A bucket notification as MinIO’s webhook target posts it (`EventName`, `Key`, `Records`); only the ' +
      '`Records` are read, and only `s3:ObjectCreated:*` events count.',
  });

const matchedSchema = z.object({
  bucket: z.string(),
  key: z.string().openapi({ description: 'Decoded.' }),
  etag: z.string().optional(),
  eventName: z.string(),
  pipelines: z.array(z.string()).openapi({ description: 'Pipelines whose watched prefix holds the object.' }),
  ignored: z.string().optional().openapi({ description: 'Why the object starts nothing.' }),
});

const notedSchema = z.object({
  pipeline: z.string(),
  added: z.number().int().openapi({ description: 'Objects seen for the first time.' }),
  unclaimed: z.number().int().openapi({ description: 'Objects of this notification no trigger has used yet.' }),
  signalled: z.boolean().openapi({ description: 'Whether the settle workflow (`new-data:<pipeline>`) was signalled.' }),
});

const acceptedSchema = z
  .object({ objects: z.array(matchedSchema), pipelines: z.array(notedSchema) })
  .openapi('S3NotificationAccepted');

const s3EventRoute = createRoute({
  method: 'post',
  path: '/s3',
  ...scoped('trigger'),
  tags: ['events'],
  summary: 'Receive an S3/MinIO bucket notification (new-data triggers)',
  description:
    'Matches each created object against the watched prefixes of the pipelines with `triggers.newData`, records ' +
    'it once per key and ETag, and signals each matching pipeline’s settle workflow: a burst of objects within ' +
    '`settleSeconds` starts one run. Point MinIO’s webhook target here with a `trigger`-scoped key as its ' +
    '`auth_token` (bare `mlk_...` or `Bearer mlk_...`).',
  request: { body: { content: { 'application/json': { schema: notificationSchema } }, required: true } },
  responses: {
    202: jsonResponse('What each object matched and what was recorded.', acceptedSchema),
    400: errorResponse('Not a bucket notification (the field is named).'),
    503: errorResponse('The database or Temporal is unavailable; the sender should retry.'),
  },
});

/**
 * A {@link WatchList} over the stored definitions, re-read at most every `ttlMs` (default 2000) and at once after
 * {@link WatchList.invalidate}. The cache is this process's: another API process sees a saved watch within `ttlMs`.
 */
export function createWatchList(watched: Pick<WatchedObjectStore, 'watchingPipelines'>, ttlMs = 2000): WatchList {
  let cached: { at: number; watches: Promise<WatchedPrefix[]> } | undefined;
  return {
    get() {
      const now = Date.now();
      if (!cached || now - cached.at >= ttlMs) {
        const watches = watched
          .watchingPipelines()
          .then((rows) => rows.flatMap((r) => watchOfStored(r.definition) ?? []));
        const entry = { at: now, watches };
        // A failed read is not kept: the next notification reads again.
        watches.catch(() => {
          if (cached === entry) cached = undefined;
        });
        cached = entry;
      }
      return cached.watches;
    },
    invalidate() {
      cached = undefined;
    },
  };
}

/** `/v1/events`: notifications that trigger pipelines. */
export function dataEvents(deps: DataEventsDeps): OpenAPIHono<AppEnv> {
  const router = createRouter();
  const watches = deps.watchList ?? createWatchList(deps.watched, deps.watchCacheMs);

  router.openapi(s3EventRoute, async (c) => {
    const events = objectEventsOf(c.req.valid('json').Records);
    const all = await watches.get();
    const allowed = all.filter((w) => isWatchAllowed(deps.policy, w));
    const objects = matchObjects(events, allowed).map((m) => {
      if (!m.ignored || m.etag === undefined || !isCreateEvent(m.eventName)) return m;
      const refused = all.filter((w) => !allowed.includes(w) && isWatched(w, m.bucket, m.key));
      if (refused.length === 0) return m;
      const names = refused.map((w) => w.pipeline).join(', ');
      return { ...m, ignored: `watched by ${names}, but outside the allowed buckets (DATA_BUCKETS)` };
    });
    const perPipeline = new Map<string, WatchedObjectRef[]>();
    objects.forEach((m, i) => {
      if (m.etag === undefined) return;
      for (const pipeline of m.pipelines) {
        const list = perPipeline.get(pipeline) ?? [];
        list.push({ key: m.key, etag: m.etag, size: events[i]?.size });
        perPipeline.set(pipeline, list);
      }
    });
    const noted: NotedObjects[] = [];
    for (const watch of allowed) {
      const found = perPipeline.get(watch.pipeline);
      if (!found) continue;
      noted.push(
        await noteNewObjects({ watched: deps.watched, temporal: deps.temporal }, watch, found, 'notification'),
      );
    }
    return c.json({ objects, pipelines: noted }, 202);
  });

  return router;
}
