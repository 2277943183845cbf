import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseBucketGrant } from '../../../data/access-policy.js';
import { notifiedPrefixes, webhookArn, webhookEnvironment } from '../../../stack/minio-notifications.js';

const grants = (...entries: string[]) => entries.map(parseBucketGrant);

describe('notifiedPrefixes', () => {
  it('makes one rule per readable prefix, the default grant included', () => {
    expect(notifiedPrefixes(grants('mlops/landing/'), [])).toEqual([{ bucket: 'mlops', prefix: 'landing/' }]);
    expect(notifiedPrefixes(grants('raw', 'mlops/landing/'), [])).toEqual([
      { bucket: 'mlops', prefix: 'landing/' },
      { bucket: 'raw', prefix: '' },
    ]);
  });

  it('drops a prefix inside another of the same bucket (S3 refuses overlapping rules)', () => {
    expect(notifiedPrefixes(grants('b/landing/', 'b/landing/2001/', 'b/lan/', 'c/landing/2001/'), [])).toEqual([
      { bucket: 'b', prefix: 'lan/' },
      { bucket: 'b', prefix: 'landing/' },
      { bucket: 'c', prefix: 'landing/2001/' },
    ]);
    expect(notifiedPrefixes(grants('b/x/', 'b'), [])).toEqual([{ bucket: 'b', prefix: '' }]);
  });

  it('reads `*` as every bucket there is', () => {
    expect(notifiedPrefixes(grants('*', 'a/x/'), ['a', 'b'])).toEqual([
      { bucket: 'a', prefix: '' },
      { bucket: 'b', prefix: '' },
    ]);
  });

  it('covers every readable object with rules that never overlap', () => {
    const segment = fc.constantFrom('a', 'b', 'ab', 'x');
    const entry = fc.tuple(fc.constantFrom('b1', 'b2'), fc.array(segment, { maxLength: 3 }));
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 6 }), fc.array(segment, { maxLength: 4 }), (es, key) => {
        const entries = es.map(([b, parts]) => (parts.length ? `${b}/${parts.join('/')}/` : b));
        const rules = notifiedPrefixes(grants(...entries), []);
        for (const bucket of ['b1', 'b2']) {
          const objectKey = `${key.join('/')}/file.csv`;
          const readable = grants(...entries).some((g) => g.bucket === bucket && objectKey.startsWith(g.prefix));
          const matching = rules.filter((r) => r.bucket === bucket && objectKey.startsWith(r.prefix));
          expect(matching).toHaveLength(readable ? 1 : 0);
        }
      }),
    );
  });
});

describe('the webhook target', () => {
  it('is configured from MinIO environment, the token only when there is one', () => {
    const env = webhookEnvironment({ endpoint: 'http://127.0.0.1:3000/v1/events/s3', authToken: 't', queueDir: '/q' });
    expect(env).toMatchObject({
      MINIO_NOTIFY_WEBHOOK_ENABLE_MLOPS: 'on',
      MINIO_NOTIFY_WEBHOOK_ENDPOINT_MLOPS: 'http://127.0.0.1:3000/v1/events/s3',
      MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_MLOPS: 't',
      MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_MLOPS: '/q',
    });
    const open = webhookEnvironment({ endpoint: 'http://h/v1/events/s3', authToken: undefined, queueDir: '/q' });
    expect(Object.keys(open)).not.toContain('MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_MLOPS');
    expect(webhookArn()).toBe('arn:minio:sqs::MLOPS:webhook');
  });
});
