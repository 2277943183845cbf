import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import * as tar from 'tar';

/** An official release archive of a binary, pinned by its published sha256. */
export interface ReleaseAsset {
  readonly url: string;
  /** Lower-case hex sha256 of the archive, as the project publishes it. */
  readonly sha256: string;
  /** The executable's path inside the (`.tar.gz`) archive. */
  readonly member: string;
}

/** Why a download did not give a usable binary; the caller falls back to building from source. */
export class DownloadError extends Error {
  override readonly name = 'DownloadError';
}

export interface DownloadProgress {
  readonly bytes: number;
  /** From Content-Length; undefined when the server does not say. */
  readonly totalBytes: number | undefined;
}

export interface DownloadOptions {
  /** Gives up when no byte arrives for this long (and when nothing answers at all). */
  readonly idleTimeoutMs?: number;
  /** Called as bytes arrive, at most every 100 ms. */
  readonly onProgress?: (progress: DownloadProgress) => void;
}

/**
 * Downloads `asset`, checks the archive's sha256 against the pinned one before anything is unpacked, and installs
 * its executable as `target` (written beside it, then renamed: a reader never sees half a binary, and a failed
 * download leaves nothing behind).
 *
 * @throws DownloadError when the server cannot be reached or answers an error, the archive is not the pinned one,
 *   or it holds no such executable.
 */
export async function downloadReleaseBinary(
  asset: ReleaseAsset,
  target: string,
  options: DownloadOptions = {},
): Promise<{ bytes: number }> {
  const idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const staging = fs.mkdtempSync(path.join(path.dirname(target), `.${path.basename(target)}-download-`));
  try {
    const archive = path.join(staging, 'archive.tar.gz');
    const { bytes, digest } = await fetchTo(asset.url, archive, idleTimeoutMs, options.onProgress);
    if (digest !== asset.sha256) {
      throw new DownloadError(`${asset.url} has sha256 ${digest}, not the published ${asset.sha256}`);
    }
    const unpacked = path.join(staging, 'unpacked');
    fs.mkdirSync(unpacked);
    const member = path.posix.normalize(asset.member);
    try {
      await tar.x({ file: archive, cwd: unpacked, strict: true, filter: (p) => path.posix.normalize(p) === member });
    } catch (error) {
      throw new DownloadError(`${asset.url} is not a readable .tar.gz archive: ${(error as Error).message}`);
    }
    const binary = path.join(unpacked, member);
    if (!fs.existsSync(binary) || !fs.statSync(binary).isFile()) {
      throw new DownloadError(`${asset.url} holds no ${asset.member}`);
    }
    fs.chmodSync(binary, 0o755);
    fs.renameSync(binary, target);
    return { bytes };
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

async function fetchTo(
  url: string,
  file: string,
  idleTimeoutMs: number,
  onProgress: ((progress: DownloadProgress) => void) | undefined,
): Promise<{ bytes: number; digest: string }> {
  const controller = new AbortController();
  let idle = setTimeout(() => controller.abort(), idleTimeoutMs);
  const touch = () => {
    clearTimeout(idle);
    idle = setTimeout(() => controller.abort(), idleTimeoutMs);
  };
  try {
    let response: Response;
    try {
      response = await fetch(url, { signal: controller.signal, redirect: 'follow' });
    } catch (error) {
      throw new DownloadError(
        `could not reach ${new URL(url).host} (${describeFetchError(error, controller.signal.aborted)})`,
      );
    }
    if (!response.ok || !response.body) {
      await response.body?.cancel();
      throw new DownloadError(`${url} answered ${response.status} ${response.statusText}`);
    }
    const length = Number(response.headers.get('content-length'));
    const totalBytes = Number.isFinite(length) && length > 0 ? length : undefined;
    const out = fs.createWriteStream(file);
    const hash = createHash('sha256');
    let bytes = 0;
    let reportedAt = 0;
    try {
      for await (const chunk of Readable.fromWeb(response.body as WebReadableStream<Uint8Array>)) {
        touch();
        const buffer = chunk as Buffer;
        bytes += buffer.length;
        hash.update(buffer);
        if (!out.write(buffer)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
        const now = Date.now();
        if (onProgress && now - reportedAt >= 100) {
          reportedAt = now;
          onProgress({ bytes, totalBytes });
        }
      }
    } catch (error) {
      throw new DownloadError(
        `the download of ${url} broke off: ${describeFetchError(error, controller.signal.aborted)}`,
      );
    } finally {
      await new Promise<void>((resolve, reject) =>
        out.end((error?: Error | null) => (error ? reject(error) : resolve())),
      );
    }
    if (totalBytes !== undefined && bytes !== totalBytes) {
      throw new DownloadError(`the download of ${url} ended after ${bytes} of ${totalBytes} bytes`);
    }
    onProgress?.({ bytes, totalBytes });
    return { bytes, digest: hash.digest('hex') };
  } finally {
    clearTimeout(idle);
  }
}

function describeFetchError(error: unknown, timedOut: boolean): string {
  if (timedOut) return 'no answer in time';
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}
