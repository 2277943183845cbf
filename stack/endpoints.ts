import type { AppConfig, ServiceEndpoints } from '../core/config.js';
import { PLATFORM_DATABASE, postgresUrl } from './postgres-server.js';

/**
 * The endpoints a standalone process (a worker on another host, the API in a container) connects to: the
 * configured external service, or else the local stack that `npm start` runs with the configured ports, so that an
 * extra worker can join a developer's stack without further settings.
 */
export function resolveEndpoints(config: AppConfig): ServiceEndpoints {
  return {
    temporal: {
      address: config.temporal.address ?? `127.0.0.1:${config.temporal.port}`,
      namespace: config.temporal.namespace,
      uiUrl: config.temporal.address ? undefined : `http://127.0.0.1:${config.temporal.uiPort}`,
    },
    databaseUrl: config.database.url ?? postgresUrl('127.0.0.1', config.database.port, PLATFORM_DATABASE),
    s3: {
      endpoint: config.s3.endpoint ?? `http://127.0.0.1:${config.s3.port}`,
      accessKey: config.s3.accessKey,
      secretKey: config.s3.secretKey,
      bucket: config.s3.bucket,
      region: config.s3.region,
    },
  };
}
