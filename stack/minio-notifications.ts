/**
 * Bucket notifications from the local MinIO to the API's `POST /v1/events/s3`, the push side of new-data triggers.
 * MinIO learns its webhook target from its environment when it starts; the target keeps undelivered events in a
 * queue folder and delivers them once the API answers, so MinIO may start (and objects land) before the API is up.
 * Which objects are sent: those created under the buckets and prefixes sources may read (`DATA_BUCKETS`), the only
 * places a watched prefix can see; the platform's own artifacts are never sent.
 */
import type { Client as MinioClient } from 'minio';
import {
  CloudFunctionConfig,
  NotificationConfig,
  ObjectCreatedAll,
  QueueConfig,
  TopicConfig,
  type TargetConfig,
} from 'minio';
import type { BucketGrant } from '../data/access-policy.js';

/** The webhook target's id in MinIO's configuration (its ARN names it). */
const TARGET_ID = 'MLOPS';
/** Ids of the queue rules this platform writes, so a later start replaces its own and keeps everyone else's. */
const RULE_ID_PREFIX = 'temporal-mlops-new-data';

export interface MinioWebhookTarget {
  /** `http://host:port/v1/events/s3`. */
  readonly endpoint: string;
  /** A `trigger`-scoped API key's token, sent as `Authorization: Bearer <token>`; none when the API is open. */
  readonly authToken: string | undefined;
  /** Where MinIO keeps the events the API has not taken yet. */
  readonly queueDir: string;
}

/** MinIO's environment for the webhook target. */
export function webhookEnvironment(target: MinioWebhookTarget): Record<string, string> {
  return {
    [`MINIO_NOTIFY_WEBHOOK_ENABLE_${TARGET_ID}`]: 'on',
    [`MINIO_NOTIFY_WEBHOOK_ENDPOINT_${TARGET_ID}`]: target.endpoint,
    [`MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_${TARGET_ID}`]: target.queueDir,
    [`MINIO_NOTIFY_WEBHOOK_QUEUE_LIMIT_${TARGET_ID}`]: '100000',
    ...(target.authToken ? { [`MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_${TARGET_ID}`]: target.authToken } : {}),
  };
}

/** The target's ARN, as bucket notification rules name it (the server's region, empty when none is set). */
export function webhookArn(region = ''): string {
  return `arn:minio:sqs:${region}:${TARGET_ID}:webhook`;
}

/** One bucket notification rule: created objects under `prefix` (`''`: the whole bucket). */
export interface NotifiedPrefix {
  readonly bucket: string;
  readonly prefix: string;
}

/**
 * The rules that cover what sources may read: one per grant, `*` standing for every bucket in `buckets`, and a
 * prefix inside another of the same bucket dropped (S3 refuses overlapping rules for one event). Sorted.
 */
export function notifiedPrefixes(grants: readonly BucketGrant[], buckets: readonly string[]): NotifiedPrefix[] {
  const byBucket = new Map<string, string[]>();
  for (const grant of grants) {
    for (const bucket of grant.bucket === '*' ? buckets : [grant.bucket]) {
      byBucket.set(bucket, [...(byBucket.get(bucket) ?? []), grant.prefix]);
    }
  }
  const rules: NotifiedPrefix[] = [];
  for (const [bucket, prefixes] of [...byBucket].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const kept: string[] = [];
    // Sorted, a prefix comes right after any prefix of it that is kept, so one look back suffices.
    for (const prefix of [...new Set(prefixes)].sort()) {
      const last = kept.at(-1);
      if (last === undefined || !prefix.startsWith(last)) kept.push(prefix);
    }
    rules.push(...kept.map((prefix) => ({ bucket, prefix })));
  }
  return rules;
}

/** What {@link configureBucketNotifications} did. */
export interface ConfiguredNotifications {
  readonly rules: readonly NotifiedPrefix[];
  /** Buckets of the rules that do not exist (yet): nothing is sent for them; polling still watches them. */
  readonly missingBuckets: readonly string[];
}

/** A rule read back from a bucket, rebuilt as one to write again. */
function copyOf(
  target: TargetConfig,
  entry: { Id: string; Event: string[]; Filter: { Name: string; Value: string }[] },
) {
  target.setId(entry.Id);
  for (const event of entry.Event) target.addEvent(event);
  for (const filter of entry.Filter) {
    if (filter.Name === 'prefix') target.addFilterPrefix(filter.Value);
    if (filter.Name === 'suffix') target.addFilterSuffix(filter.Value);
  }
  return target;
}

/**
 * Makes each bucket send its created objects under the rules' prefixes to the webhook target `arn`: this
 * platform's earlier rules are replaced, rules anyone else wrote are kept. Idempotent.
 */
export async function configureBucketNotifications(
  client: MinioClient,
  rules: readonly NotifiedPrefix[],
  arn: string,
): Promise<ConfiguredNotifications> {
  const missingBuckets: string[] = [];
  const configured: NotifiedPrefix[] = [];
  for (const bucket of [...new Set(rules.map((r) => r.bucket))]) {
    if (!(await client.bucketExists(bucket))) {
      missingBuckets.push(bucket);
      continue;
    }
    const existing = await client.getBucketNotification(bucket);
    const config = new NotificationConfig();
    const others = <T extends { Id: string }>(entries: T[] | undefined): T[] =>
      (entries ?? []).filter((e) => !e.Id.startsWith(RULE_ID_PREFIX));
    for (const e of others(existing.QueueConfiguration)) config.add(copyOf(new QueueConfig(e.Queue), e));
    for (const e of others(existing.TopicConfiguration)) config.add(copyOf(new TopicConfig(e.Topic), e));
    for (const e of others(existing.CloudFunctionConfiguration))
      config.add(copyOf(new CloudFunctionConfig(e.CloudFunction), e));
    rules
      .filter((r) => r.bucket === bucket)
      .forEach((rule, i) => {
        const queue = new QueueConfig(arn);
        queue.setId(`${RULE_ID_PREFIX}-${i + 1}`);
        queue.addEvent(ObjectCreatedAll);
        if (rule.prefix !== '') queue.addFilterPrefix(rule.prefix);
        config.add(queue);
        configured.push(rule);
      });
    await client.setBucketNotification(bucket, config);
  }
  return { rules: configured, missingBuckets };
}
