import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Client } from 'minio';
import { ConfigError } from '../../core/errors.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ArtifactNotFoundError, S3ArtifactStore, type ArtifactRef } from '../../storage/artifact-store.js';
import {
  ArtifactIntegrityError,
  InvalidArtifactUriError,
  artifactKey,
  formatArtifactUri,
  sha256Hex,
} from '../../storage/content-hash.js';
import { testEndpoints } from '../support/stack.js';

// One bucket per test file, so files running in parallel never see each other's objects.
const bucket = `artifacts-test-${randomUUID().slice(0, 8)}`;
let store: S3ArtifactStore;
let scratch: string;

async function objectKeys(client: Client, name: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const item of client.listObjectsV2(name, '', true)) {
    if (item.name) keys.push(item.name);
  }
  return keys;
}

async function dropBucket(client: Client, name: string): Promise<void> {
  if (!(await client.bucketExists(name))) return;
  await client.removeObjects(name, await objectKeys(client, name));
  await client.removeBucket(name);
}

async function readAll(readable: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of readable) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Compares large buffers by digest: vitest's deep equality walks them byte by byte and takes seconds. */
function fingerprint(data: Buffer): { bytes: number; sha256: string } {
  return { bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
}

/** A deterministic stream of `total` bytes in 64 KiB chunks, never held in memory at once. */
function generated(total: number, seed: number): Readable {
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < total; offset += 65_536) {
        const chunk = Buffer.alloc(Math.min(65_536, total - offset));
        for (let i = 0; i < chunk.length; i++) chunk[i] = (offset + i + seed) % 253;
        yield chunk;
      }
    })(),
  );
}

describe('S3ArtifactStore against MinIO', { timeout: 60_000 }, () => {
  beforeAll(async () => {
    store = S3ArtifactStore.fromConfig({ ...testEndpoints().s3, bucket });
    scratch = await mkdtemp(path.join(os.tmpdir(), 'artifact-store-test-'));
    await store.ensureBucket();
  });

  afterAll(async () => {
    if (store) await dropBucket(store.client, bucket);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('creates buckets idempotently, also when callers race', async () => {
    await store.ensureBucket();
    const raced = S3ArtifactStore.fromConfig({ ...testEndpoints().s3, bucket: `${bucket}-race` });
    try {
      await Promise.all(Array.from({ length: 5 }, () => raced.ensureBucket()));
      await expect(raced.client.bucketExists(raced.bucket)).resolves.toBe(true);
    } finally {
      await dropBucket(raced.client, raced.bucket);
    }
  });

  it('accepts only a bare http(s) endpoint URL', () => {
    const s3 = testEndpoints().s3;
    for (const endpoint of ['ftp://127.0.0.1:9000', 'http://127.0.0.1:9000/prefix', 'not a url']) {
      expect(() => S3ArtifactStore.fromConfig({ ...s3, endpoint })).toThrow(ConfigError);
    }
    expect(S3ArtifactStore.fromConfig({ ...s3, endpoint: 'https://s3.example.com' }).bucket).toBe(s3.bucket);
  });

  it('round-trips bytes and returns a small, serializable, content-addressed ref', async () => {
    const body = Buffer.from('{"hello":"artifacts"}');
    const ref = await store.put(body, { kind: 'report', contentType: 'application/json' });
    const sha256 = sha256Hex(body);
    expect(ref).toEqual({
      uri: `s3://${bucket}/artifacts/sha256/${sha256.slice(0, 2)}/${sha256}`,
      sha256,
      bytes: body.length,
      contentType: 'application/json',
      kind: 'report',
    });
    expect(JSON.parse(JSON.stringify(ref))).toEqual(ref);
    await expect(store.get(ref)).resolves.toEqual(body);
    await expect(store.get(ref.uri)).resolves.toEqual(body);
    await expect(readAll(await store.getStream(ref))).resolves.toEqual(body);

    const fromString = await store.put('plain text', { kind: 'note' });
    expect(fromString.contentType).toBe('application/octet-stream');
    expect((await store.get(fromString)).toString('utf8')).toBe('plain text');
    const view = new Uint8Array(Buffer.from('xxsliceyy')).subarray(2, 7);
    expect((await store.get(await store.put(view, { kind: 'note' }))).toString()).toBe('slice');
  });

  it('stores the same content once, whatever its kind, and does not upload it again', async () => {
    const body = randomBytes(10_000);
    const keysBefore = await objectKeys(store.client, bucket);
    const first = await store.put(body, { kind: 'dataset' });
    const uploads = vi.spyOn(store.client, 'putObject');
    try {
      const second = await store.put(body, { kind: 'dataset' });
      const otherKind = await store.put(body, { kind: 'model.onnx' });
      expect(second).toEqual(first);
      expect(otherKind.uri).toBe(first.uri);
      expect(uploads).not.toHaveBeenCalled();
    } finally {
      uploads.mockRestore();
    }
    // Other tests in this file write to the same bucket; only this content's one object may be new.
    const added = (await objectKeys(store.client, bucket)).filter((k) => !keysBefore.includes(k));
    expect(added).toEqual([artifactKey(first.sha256)]);
    expect((await store.stat(first))?.kind).toBe('dataset');
  });

  it('puts streams and files without buffering them and agrees with put', async () => {
    const total = 3 * 1024 * 1024 + 17;
    const spoolDir = await mkdtemp(path.join(scratch, 'spool-'));
    const spooling = new S3ArtifactStore(store.client, bucket, store.region, { spoolDir });
    const fromStream = await spooling.putStream(generated(total, 1), { kind: 'dataset', contentType: 'text/csv' });
    expect(await readdir(spoolDir)).toEqual([]);

    const whole = await readAll(generated(total, 1));
    expect(fromStream).toEqual({
      uri: formatArtifactUri(bucket, sha256Hex(whole)),
      sha256: sha256Hex(whole),
      bytes: total,
      contentType: 'text/csv',
      kind: 'dataset',
    });
    expect(fingerprint(await store.get(fromStream))).toEqual(fingerprint(whole));

    const file = path.join(scratch, 'model.onnx');
    await writeFile(file, generated(total, 2));
    const fromFile = await store.putFile(file, { kind: 'model.onnx' });
    expect(fromFile.sha256).toBe(sha256Hex(await readFile(file)));
    expect(fromFile.bytes).toBe(total);
    expect(await store.put(await readFile(file), { kind: 'model.onnx' })).toEqual(fromFile);
  });

  it('removes the spool file when the source stream fails', async () => {
    const spoolDir = await mkdtemp(path.join(scratch, 'spool-'));
    const spooling = new S3ArtifactStore(store.client, bucket, store.region, { spoolDir });
    const failing = Readable.from(
      (function* () {
        yield Buffer.from('partial');
        throw new Error('source broke');
      })(),
    );
    await expect(spooling.putStream(failing, { kind: 'dataset' })).rejects.toThrow('source broke');
    expect(await readdir(spoolDir)).toEqual([]);
  });

  it('reports metadata with stat', async () => {
    const before = Date.now();
    const ref = await store.put(randomBytes(1234), { kind: 'stats', contentType: 'application/vnd.apache.parquet' });
    const info = await store.stat(ref);
    expect(info).toMatchObject({
      bytes: 1234,
      contentType: 'application/vnd.apache.parquet',
      sha256: ref.sha256,
      kind: 'stats',
    });
    expect(info?.lastModified).toBeInstanceOf(Date);
    expect(info!.lastModified.getTime()).toBeGreaterThan(before - 60_000);
    const raw = await store.client.statObject(bucket, artifactKey(ref.sha256));
    expect(raw.metaData).toMatchObject({ sha256: ref.sha256, kind: 'stats' });
    await expect(store.exists(ref)).resolves.toBe(true);
  });

  it('tells a missing artifact apart from a failure', async () => {
    const missing = formatArtifactUri(bucket, sha256Hex(randomUUID()));
    await expect(store.stat(missing)).resolves.toBeUndefined();
    await expect(store.exists(missing)).resolves.toBe(false);
    await expect(store.get(missing)).rejects.toBeInstanceOf(ArtifactNotFoundError);
    await expect(store.getStream(missing)).rejects.toBeInstanceOf(ArtifactNotFoundError);
    await expect(store.materialize(missing, path.join(scratch, 'cache-missing'))).rejects.toBeInstanceOf(
      ArtifactNotFoundError,
    );
  });

  it('rejects URIs of another bucket and malformed URIs', async () => {
    const sha256 = sha256Hex('x');
    await expect(store.get(formatArtifactUri('someone-else', sha256))).rejects.toThrow(InvalidArtifactUriError);
    await expect(store.stat(`s3://${bucket}/datasets/flights.parquet`)).rejects.toThrow(InvalidArtifactUriError);
    const ref = await store.put('x', { kind: 'note' });
    const inconsistent: ArtifactRef = { ...ref, sha256: sha256Hex('y') };
    await expect(store.get(inconsistent)).rejects.toThrow(/inconsistent/);
  });

  it('presigns URLs that a plain fetch can read', async () => {
    const body = randomBytes(4096);
    const ref = await store.put(body, { kind: 'model.onnx' });
    const response = await fetch(await store.presignedGetUrl(ref, 60));
    expect(response.status).toBe(200);
    expect(fingerprint(Buffer.from(await response.arrayBuffer()))).toEqual(fingerprint(body));
    await expect(store.presignedGetUrl(ref, 0)).rejects.toThrow(RangeError);
  });

  it('materializes into a verified local cache and reuses it without downloading', async () => {
    const cacheDir = path.join(scratch, 'cache');
    const body = randomBytes(200_000);
    const ref = await store.put(body, { kind: 'dataset' });
    const downloads = vi.spyOn(store.client, 'getObject');
    try {
      const local = await store.materialize(ref, cacheDir);
      expect(local).toBe(path.join(cacheDir, ref.sha256));
      expect(fingerprint(await readFile(local))).toEqual(fingerprint(body));
      expect(downloads).toHaveBeenCalledTimes(1);
      const firstWrite = (await stat(local)).mtimeMs;

      await expect(store.materialize(ref.uri, cacheDir)).resolves.toBe(local);
      expect(downloads).toHaveBeenCalledTimes(1);
      expect((await stat(local)).mtimeMs).toBe(firstWrite);
      expect(await readdir(cacheDir)).toEqual([ref.sha256]);
    } finally {
      downloads.mockRestore();
    }
  });

  it('detects a corrupted cache file and downloads it again', async () => {
    const cacheDir = path.join(scratch, 'cache-corrupt');
    const body = randomBytes(50_000);
    const ref = await store.put(body, { kind: 'dataset' });
    const local = await store.materialize(ref, cacheDir);
    const flipped = Buffer.from(body);
    flipped[100] = flipped[100]! ^ 0xff;
    await writeFile(local, flipped);

    const downloads = vi.spyOn(store.client, 'getObject');
    try {
      await expect(store.materialize(ref, cacheDir)).resolves.toBe(local);
      expect(downloads).toHaveBeenCalledTimes(1);
    } finally {
      downloads.mockRestore();
    }
    expect(fingerprint(await readFile(local))).toEqual(fingerprint(body));
    expect(await readdir(cacheDir)).toEqual([ref.sha256]);
  });

  it('refuses an object overwritten behind its back, and a put repairs it', async () => {
    const body = Buffer.from('the real model bytes');
    const ref = await store.put(body, { kind: 'model.onnx' });
    await store.client.putObject(bucket, artifactKey(ref.sha256), Buffer.from('the fake model bytes'));

    await expect(store.get(ref)).rejects.toBeInstanceOf(ArtifactIntegrityError);
    await expect(store.get(ref)).rejects.toThrow(new RegExp(`${ref.uri}: expected sha256 ${ref.sha256}`));
    await expect(readAll(await store.getStream(ref))).rejects.toBeInstanceOf(ArtifactIntegrityError);
    const cacheDir = path.join(scratch, 'cache-tampered');
    await expect(store.materialize(ref, cacheDir)).rejects.toBeInstanceOf(ArtifactIntegrityError);
    expect(await readdir(cacheDir)).toEqual([]);

    // Same key and size, but not the object this store wrote (no recorded hash): the upload happens again.
    await expect(store.put(body, { kind: 'model.onnx' })).resolves.toEqual(ref);
    await expect(store.get(ref)).resolves.toEqual(body);
  });
});
