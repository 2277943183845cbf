/**
 * Encrypts connection secrets at rest: AES-256-GCM under one platform key, each secret bound to the name it belongs
 * to (additional authenticated data), so a ciphertext copied to another row or altered in any bit does not open.
 * The key comes from `CONNECTIONS_KEY` (base64, 32 bytes) or a key file generated on first use (mode 0600).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { DomainError } from '../core/errors.js';
import { readOrCreateSecret } from '../core/secret-file.js';

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Thrown when a sealed secret does not open: altered, bound to another name, or sealed under another key. */
export class SecretIntegrityError extends DomainError {
  override readonly name = 'SecretIntegrityError';
  constructor(message: string, options?: ErrorOptions) {
    super('integrity', message, { ...options, code: 'secret_integrity' });
  }
}

/**
 * The 32-byte key from a base64 string.
 *
 * @throws TypeError when it does not decode to exactly 32 bytes.
 */
export function keyFromBase64(value: string): Buffer {
  const key = Buffer.from(value.trim(), 'base64');
  if (key.length !== KEY_BYTES) {
    throw new TypeError(`CONNECTIONS_KEY must be ${KEY_BYTES} bytes in base64 (openssl rand -base64 32)`);
  }
  return key;
}

/**
 * The key in `file`, generating one (32 random bytes, base64, mode 0600, its folder 0700) when the file does not
 * exist. Two processes racing both end with the key written first.
 */
export async function keyFromFile(file: string): Promise<Buffer> {
  return keyFromBase64(await readOrCreateSecret(file, () => randomBytes(KEY_BYTES).toString('base64')));
}

/** Seals and opens secrets under one key, loaded on first use. */
export class SecretBox {
  #key: Promise<Buffer> | undefined;

  /** @param loadKey called once, on the first seal or open (a rejected load is retried next time). */
  constructor(private readonly loadKey: () => Promise<Buffer>) {}

  /** A box over `CONNECTIONS_KEY` when given, else over the key file (created on first use). */
  static fromSettings(settings: { key: string | undefined; keyFile: string }): SecretBox {
    const { key, keyFile } = settings;
    return new SecretBox(async () => (key ? keyFromBase64(key) : keyFromFile(keyFile)));
  }

  private async key(): Promise<Buffer> {
    this.#key ??= this.loadKey().catch((error: unknown) => {
      this.#key = undefined;
      throw error;
    });
    return this.#key;
  }

  /** `iv.tag.ciphertext`, each base64url; `context` (the owner's name) must be given again to open it. */
  async seal(plaintext: string, context: string): Promise<string> {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', await this.key(), iv);
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return [iv, cipher.getAuthTag(), ciphertext].map((b) => b.toString('base64url')).join('.');
  }

  /**
   * The plaintext of a sealed secret.
   *
   * @throws SecretIntegrityError when it is malformed, altered, sealed for another context or under another key.
   */
  async open(sealed: string, context: string): Promise<string> {
    const parts = sealed.split('.');
    const [iv, tag, ciphertext] = parts.map((p) => Buffer.from(p, 'base64url'));
    if (parts.length !== 3 || !iv || !tag || !ciphertext || iv.length !== IV_BYTES || tag.length !== TAG_BYTES) {
      throw new SecretIntegrityError(`the stored secret of ${context} is malformed`);
    }
    const decipher = createDecipheriv('aes-256-gcm', await this.key(), iv);
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
    } catch (error) {
      throw new SecretIntegrityError(
        `the stored secret of ${context} does not open: altered, or sealed under another CONNECTIONS_KEY`,
        { cause: error },
      );
    }
  }
}
