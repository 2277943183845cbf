/**
 * S3 / MinIO bucket notifications as the webhook receives them (MinIO's webhook target posts
 * `{EventName, Key, Records: [...]}`, one record per request; S3 via SNS/EventBridge posts the same `Records`):
 * which records are object creations, and which pipelines' watched prefixes they fall in. Object keys in records are
 * URL-encoded (form encoding: a space is `+`), so they are decoded here before anything is compared.
 */
import type { WatchedPrefix } from './new-data.js';
import { isWatched } from './new-data.js';

/** One record of a notification, as validated by the route (extra fields are ignored). */
export interface S3NotificationRecord {
  readonly eventName: string;
  readonly s3: {
    readonly bucket: { readonly name: string };
    readonly object: { readonly key: string; readonly eTag?: string | undefined; readonly size?: number | undefined };
  };
}

/** A record's object, key decoded, ETag without quotes. */
export interface S3ObjectEvent {
  readonly eventName: string;
  readonly bucket: string;
  readonly key: string;
  readonly etag: string | undefined;
  readonly size: number | undefined;
  /** Only object creations (`s3:ObjectCreated:*`: put, post, copy, multipart completion) count as new data. */
  readonly created: boolean;
}

/** Whether an event name is an object creation (`s3:ObjectCreated:Put`, `ObjectCreated:CompleteMultipartUpload`). */
export function isCreateEvent(eventName: string): boolean {
  return /^(s3:)?ObjectCreated:/.test(eventName);
}

/**
 * Decodes a record's object key: form URL encoding, as S3 and MinIO write it (`+` is a space, `%2B` a plus).
 *
 * @throws URIError when the key holds a malformed escape.
 */
export function decodeS3Key(key: string): string {
  return decodeURIComponent(key.replace(/\+/g, ' '));
}

/** Whether a record's key decodes; the route names the field when it does not. */
export function isDecodableKey(key: string): boolean {
  try {
    decodeS3Key(key);
    return true;
  } catch {
    return false;
  }
}

function normalizeEtag(etag: string): string {
  return etag.replace(/^"|"$/g, '');
}

/** The objects of a notification's records, in order. */
export function objectEventsOf(records: readonly S3NotificationRecord[]): S3ObjectEvent[] {
  return records.map((record) => ({
    eventName: record.eventName,
    bucket: record.s3.bucket.name,
    key: decodeS3Key(record.s3.object.key),
    etag: record.s3.object.eTag === undefined ? undefined : normalizeEtag(record.s3.object.eTag),
    size: record.s3.object.size,
    created: isCreateEvent(record.eventName),
  }));
}

/** What one object of a notification led to. */
export interface MatchedObject {
  readonly bucket: string;
  readonly key: string;
  readonly etag: string | undefined;
  readonly eventName: string;
  /** The pipelines whose watched prefix holds it (empty when it was ignored). */
  readonly pipelines: string[];
  /** Why it starts nothing: not a creation, or no pipeline watches it. */
  readonly ignored?: string;
}

/**
 * Matches each created object against the watches: an object counts for every pipeline whose watch holds it.
 * Non-create events and objects no pipeline watches are reported as ignored, with why.
 */
export function matchObjects(events: readonly S3ObjectEvent[], watches: readonly WatchedPrefix[]): MatchedObject[] {
  return events.map((event) => {
    const base = { bucket: event.bucket, key: event.key, etag: event.etag, eventName: event.eventName };
    if (!event.created || event.etag === undefined) {
      return { ...base, pipelines: [], ignored: `${event.eventName} is not an object creation` };
    }
    const pipelines = watches.filter((w) => isWatched(w, event.bucket, event.key)).map((w) => w.pipeline);
    return pipelines.length > 0 ? { ...base, pipelines } : { ...base, pipelines, ignored: 'no pipeline watches it' };
  });
}
