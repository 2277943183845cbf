import { inject } from 'vitest';
import { loadConfig, type AppConfig, type ServiceEndpoints } from '../../core/config.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Endpoints of the isolated stack that test/global-setup.ts started for this test run. */
    stack: ServiceEndpoints;
    /** The data directory of that stack. */
    stackDataDir: string;
  }
}

/** Endpoints of this test run's real Temporal, Postgres and MinIO (started by the global setup). */
export function testEndpoints(): ServiceEndpoints {
  return inject('stack');
}

/** A configuration pointing at this test run's stack, as a deployed process would see it. */
export function testConfig(overrides: NodeJS.ProcessEnv = {}): AppConfig {
  const stack = testEndpoints();
  return loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent',
    MLOPS_DATA_DIR: inject('stackDataDir'),
    TEMPORAL_ADDRESS: stack.temporal.address,
    TEMPORAL_NAMESPACE: stack.temporal.namespace,
    DATABASE_URL: stack.databaseUrl,
    S3_ENDPOINT: stack.s3.endpoint,
    S3_ACCESS_KEY: stack.s3.accessKey,
    S3_SECRET_KEY: stack.s3.secretKey,
    S3_BUCKET: stack.s3.bucket,
    S3_REGION: stack.s3.region,
    ...overrides,
  });
}
