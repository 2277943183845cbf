import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import {
  ArtifactIntegrityError,
  HashingStream,
  InvalidArtifactUriError,
  artifactKey,
  formatArtifactUri,
  isSha256Hex,
  parseArtifactUri,
  sha256Hex,
  sha256OfFile,
  sha256OfStream,
} from '../../storage/content-hash.js';

// FIPS 180-2 test vector.
const ABC_SHA256 = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

describe('hashing', () => {
  it('matches the known sha256 vectors for strings, buffers and byte arrays', () => {
    expect(sha256Hex('abc')).toBe(ABC_SHA256);
    expect(sha256Hex(Buffer.from('abc'))).toBe(ABC_SHA256);
    expect(sha256Hex(new Uint8Array([0x61, 0x62, 0x63]))).toBe(ABC_SHA256);
    expect(sha256Hex('')).toBe(EMPTY_SHA256);
  });

  it('gives the same hash for a buffer and for a stream of it in many chunks', async () => {
    const data = Buffer.alloc(1_000_003);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) % 251;
    const chunks = Array.from({ length: Math.ceil(data.length / 4099) }, (_, i) =>
      data.subarray(i * 4099, (i + 1) * 4099),
    );
    await expect(sha256OfStream(Readable.from(chunks))).resolves.toEqual({
      sha256: sha256Hex(data),
      bytes: data.length,
    });
  });

  it('hashes an empty stream and a file', async () => {
    await expect(sha256OfStream(Readable.from([]))).resolves.toEqual({ sha256: EMPTY_SHA256, bytes: 0 });
    const dir = await mkdtemp(path.join(os.tmpdir(), 'content-hash-'));
    try {
      const file = path.join(dir, 'abc.txt');
      await writeFile(file, 'abc');
      await expect(sha256OfFile(file)).resolves.toEqual({ sha256: ABC_SHA256, bytes: 3 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('fails a verifying stream at its end when the content differs from the expected hash', async () => {
    const sink = () => new Writable({ write: (_chunk, _encoding, callback) => callback() });
    const ok = new HashingStream({ sha256: ABC_SHA256, source: 'test' });
    await pipeline(Readable.from([Buffer.from('ab'), Buffer.from('c')]), ok, sink());
    expect(ok.sha256()).toBe(ABC_SHA256);

    const bad = new HashingStream({ sha256: ABC_SHA256, source: 's3://b/x' });
    const failure = pipeline(Readable.from([Buffer.from('abd')]), bad, sink());
    await expect(failure).rejects.toBeInstanceOf(ArtifactIntegrityError);
    await expect(failure).rejects.toThrow(/s3:\/\/b\/x.*expected sha256 ba7816bf/);
  });
});

describe('key layout and URIs', () => {
  it('shards keys by the first two hex characters', () => {
    expect(artifactKey(ABC_SHA256)).toBe(`artifacts/sha256/ba/${ABC_SHA256}`);
    expect(() => artifactKey(ABC_SHA256.toUpperCase())).toThrow(TypeError);
    expect(() => artifactKey('abc')).toThrow(TypeError);
    expect(isSha256Hex(ABC_SHA256)).toBe(true);
    expect(isSha256Hex(`${ABC_SHA256}0`)).toBe(false);
  });

  it('round-trips format and parse', () => {
    const uri = formatArtifactUri('mlops-artifacts', ABC_SHA256);
    expect(uri).toBe(`s3://mlops-artifacts/artifacts/sha256/ba/${ABC_SHA256}`);
    expect(parseArtifactUri(uri)).toEqual({
      bucket: 'mlops-artifacts',
      key: `artifacts/sha256/ba/${ABC_SHA256}`,
      sha256: ABC_SHA256,
    });
    expect(parseArtifactUri(uri, 'mlops-artifacts').sha256).toBe(ABC_SHA256);
    expect(formatArtifactUri(parseArtifactUri(uri).bucket, parseArtifactUri(uri).sha256)).toBe(uri);
  });

  it('rejects a URI for another bucket, naming both buckets', () => {
    const uri = formatArtifactUri('other-bucket', ABC_SHA256);
    expect(() => parseArtifactUri(uri, 'mlops-artifacts')).toThrow(InvalidArtifactUriError);
    expect(() => parseArtifactUri(uri, 'mlops-artifacts')).toThrow(/"other-bucket".*"mlops-artifacts"/);
  });

  it.each([
    ['empty', ''],
    ['another scheme', `gs://mlops-artifacts/artifacts/sha256/ba/${ABC_SHA256}`],
    ['no bucket', `s3:///artifacts/sha256/ba/${ABC_SHA256}`],
    ['bad bucket name', `s3://Mlops_Artifacts/artifacts/sha256/ba/${ABC_SHA256}`],
    ['another prefix', `s3://mlops-artifacts/data/sha256/ba/${ABC_SHA256}`],
    ['another algorithm', `s3://mlops-artifacts/artifacts/md5/ba/${ABC_SHA256}`],
    ['no shard', `s3://mlops-artifacts/artifacts/sha256/${ABC_SHA256}`],
    ['wrong shard', `s3://mlops-artifacts/artifacts/sha256/ab/${ABC_SHA256}`],
    ['uppercase hash', `s3://mlops-artifacts/artifacts/sha256/BA/${ABC_SHA256.toUpperCase()}`],
    ['short hash', 's3://mlops-artifacts/artifacts/sha256/ba/ba7816bf'],
    ['trailing slash', `s3://mlops-artifacts/artifacts/sha256/ba/${ABC_SHA256}/`],
    ['query string', `s3://mlops-artifacts/artifacts/sha256/ba/${ABC_SHA256}?versionId=1`],
    ['extra segment', `s3://mlops-artifacts/artifacts/sha256/ba/${ABC_SHA256}/x`],
  ])('rejects a malformed URI: %s', (_case, uri) => {
    expect(() => parseArtifactUri(uri)).toThrow(InvalidArtifactUriError);
  });
});
