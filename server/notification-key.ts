/**
 * The key MinIO's webhook target sends with bucket notifications (`POST /v1/events/s3`). MinIO reads its target's
 * auth token from its environment when it starts, before PostgreSQL may be up, so the token is made first and kept
 * in a file under the data directory (mode 0600); once the database is reachable, a `trigger`-scoped key with that
 * very token is stored. A key an operator revoked is never made again: delete the file to get a new token.
 */
import path from 'node:path';
import { readOrCreateSecret } from '../core/secret-file.js';
import { generateToken, type ApiKeyStore } from '../storage/api-key-store.js';

const KEY_NAME = 'minio-notifications';

/** Where `npm start` keeps the notification key's token. */
export function notificationTokenFile(dataDir: string): string {
  return path.join(dataDir, 'secrets', 'minio-notification-key');
}

/** The token MinIO's webhook target authenticates with, made on the first start. */
export function notificationToken(dataDir: string): Promise<string> {
  return readOrCreateSecret(notificationTokenFile(dataDir), generateToken);
}

/** `live`: the key authenticates; `created`: stored now; `revoked`: an operator revoked it (notifications get 401). */
export type NotificationKeyState = 'live' | 'created' | 'revoked';

/** Stores the `trigger`-scoped key of `token` unless it exists. Idempotent; two starters racing store one key. */
export async function ensureNotificationKey(keys: ApiKeyStore, token: string): Promise<NotificationKeyState> {
  const state = await keys.tokenState(token);
  if (state !== 'unknown') return state;
  // A live key of this name holds a token whose file was deleted: it is kept (an operator may revoke it); the new
  // token gets a name of its own.
  const taken = (await keys.list()).some((k) => k.name === KEY_NAME);
  try {
    await keys.create({
      name: taken ? `${KEY_NAME}-${Date.now()}` : KEY_NAME,
      scopes: ['trigger'],
      createdBy: 'npm start',
      token,
    });
  } catch (error) {
    // Another starter stored this token meanwhile (the prefix is unique): whatever it stored is the answer.
    const after = await keys.tokenState(token);
    if (after === 'unknown') throw error;
    return after;
  }
  return 'created';
}
