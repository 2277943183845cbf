import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultToolsDir, loadConfig, type AppConfig } from '../../core/config.js';
import { ConfigError } from '../../core/errors.js';

const cwd = path.join(os.tmpdir(), 'mlops-config-test-cwd');

/** Parses `env` (and nothing from the real environment) and returns the ConfigError it must throw. */
function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env, cwd);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`expected loadConfig to reject ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  it('applies the documented defaults to an empty environment', () => {
    const expected: AppConfig = {
      nodeEnv: 'development',
      logLevel: 'info',
      logFormat: 'auto',
      dataDir: path.join(cwd, '.data'),
      postgresFallbackDir: '/var/lib/temporal-mlops',
      toolsDir: defaultToolsDir(),
      binaryDownloads: true,
      demo: true,
      temporal: {
        address: undefined,
        namespace: 'default',
        taskQueue: 'mlops-main',
        trainingTaskQueue: 'mlops-training',
        port: 7233,
        uiPort: 8233,
      },
      database: { url: undefined, port: 5433 },
      s3: {
        endpoint: undefined,
        accessKey: 'minioadmin',
        secretKey: 'minioadmin',
        bucket: 'mlops-artifacts',
        region: 'us-east-1',
        port: 9000,
        consolePort: 9001,
      },
      api: {
        host: '127.0.0.1',
        port: 3000,
        bodyLimitBytes: 1_048_576,
        auth: 'keys',
        allowedHosts: ['localhost', '127.0.0.1', '[::1]'],
        rateLimitPerSecond: 1_000,
      },
      serving: {
        maxInstances: 1_000,
        maxBatchRows: 256,
        maxWaitMs: 0,
        inferenceThreads: true,
        maxInferenceThreads: 4,
        sessionThreads: 1,
      },
      predictionLog: {
        sampleRate: 1,
        queueSize: 100_000,
        batchSize: 1_000,
        flushMs: 200,
        maxBusyShare: 0.25,
        retentionDays: 30,
        partitionsAheadDays: 7,
      },
      dataAccess: {
        roots: [path.join(cwd, '.data', 'sources')],
        buckets: ['mlops-artifacts/landing/'],
        maxFiles: 10_000,
        maxDepth: 16,
        connectionsKey: undefined,
        connectTimeoutMs: 10_000,
        statementTimeoutMs: 300_000,
        probeTimeoutMs: 10_000,
      },
      worker: {
        maxConcurrentActivities: 8,
        maxConcurrentWorkflowTasks: 16,
        trainingMaxConcurrentActivities: 1,
        shutdownGraceSeconds: 30,
        rolloutReconcileEverySeconds: 60,
        metricsBindAddress: '127.0.0.1:9464',
      },
      serviceStartTimeoutSeconds: 60,
    };
    expect(loadConfig({}, cwd)).toEqual(expected);
  });

  it('ignores variables it does not know', () => {
    expect(loadConfig({ SOMETHING_ELSE: 'x', HOME: '/nowhere' }, cwd)).toEqual(loadConfig({}, cwd));
  });

  it('reads every variable that is set', () => {
    const config = loadConfig(
      {
        NODE_ENV: 'production',
        LOG_LEVEL: 'debug',
        LOG_FORMAT: 'json',
        MLOPS_DATA_DIR: '/var/lib/mlops',
        MLOPS_POSTGRES_FALLBACK_DIR: '/srv/pg',
        MLOPS_TOOLS_DIR: '/opt/mlops-tools',
        MLOPS_BINARY_DOWNLOADS: 'no',
        MLOPS_DEMO: 'false',
        TEMPORAL_ADDRESS: 'temporal:7233',
        TEMPORAL_NAMESPACE: 'mlops',
        TEMPORAL_PORT: '17233',
        TEMPORAL_UI_PORT: '18233',
        DATABASE_URL: 'postgresql://u:p@db:5432/mlops',
        POSTGRES_PORT: '15433',
        S3_ENDPOINT: 'http://minio:9000',
        S3_BUCKET: 'my.bucket-1',
        MINIO_PORT: '19000',
        MINIO_CONSOLE_PORT: '19001',
        API_HOST: '0.0.0.0',
        API_PORT: '8080',
        PREDICTION_LOG_SAMPLE_RATE: '0.05',
        PREDICTION_LOG_QUEUE_SIZE: '5000',
        PREDICTION_LOG_BATCH_SIZE: '250',
        PREDICTION_LOG_FLUSH_MS: '50',
        PREDICTION_LOG_MAX_BUSY_SHARE: '1',
        SERVICE_START_TIMEOUT_SECONDS: '5',
      },
      cwd,
    );
    expect(config).toMatchObject({
      nodeEnv: 'production',
      logLevel: 'debug',
      logFormat: 'json',
      dataDir: '/var/lib/mlops',
      postgresFallbackDir: '/srv/pg',
      toolsDir: '/opt/mlops-tools',
      binaryDownloads: false,
      demo: false,
      temporal: { address: 'temporal:7233', namespace: 'mlops', port: 17233, uiPort: 18233 },
      database: { url: 'postgresql://u:p@db:5432/mlops', port: 15433 },
      s3: { endpoint: 'http://minio:9000', bucket: 'my.bucket-1', port: 19000, consolePort: 19001 },
      api: { host: '0.0.0.0', port: 8080 },
      predictionLog: { sampleRate: 0.05, queueSize: 5000, batchSize: 250, flushMs: 50, maxBusyShare: 1 },
      serviceStartTimeoutSeconds: 5,
    });
  });

  it.each([
    ['API_PORT', 'abc'],
    ['PREDICTION_LOG_MAX_BUSY_SHARE', '0'],
    ['PREDICTION_LOG_MAX_BUSY_SHARE', '1.5'],
    ['API_PORT', '0'],
    ['POSTGRES_PORT', '65536'],
    ['TEMPORAL_PORT', '72.33'],
    ['MINIO_PORT', '-1'],
    ['S3_ENDPOINT', 'not a url'],
    ['DATABASE_URL', 'not a url'],
    ['DATABASE_URL', 'mysql://u:p@db:3306/mlops'],
    ['S3_BUCKET', 'Upper_Case'],
    ['S3_BUCKET', 'ab'],
    ['LOG_LEVEL', 'verbose'],
    ['NODE_ENV', 'staging'],
    ['TEMPORAL_ADDRESS', 'temporal'],
    ['TEMPORAL_ADDRESS', 'http://temporal:7233'],
    ['SERVICE_START_TIMEOUT_SECONDS', '0'],
    ['MLOPS_DEMO', 'maybe'],
    ['LOG_FORMAT', 'pretty'],
    ['MLOPS_BINARY_DOWNLOADS', 'sometimes'],
    ['MLOPS_POSTGRES_FALLBACK_DIR', ''],
    ['PREDICTION_LOG_SAMPLE_RATE', '1.5'],
    ['PREDICTION_LOG_SAMPLE_RATE', '-0.1'],
    ['PREDICTION_LOG_SAMPLE_RATE', 'half'],
    ['PREDICTION_LOG_SAMPLE_RATE', ''],
    ['PREDICTION_LOG_QUEUE_SIZE', '0'],
    ['SERVING_MAX_INSTANCES', '0'],
    ['SERVING_MAX_BATCH_ROWS', 'many'],
    ['SERVING_MAX_WAIT_MS', '-1'],
    ['SERVING_INFERENCE_THREADS', 'sometimes'],
    ['SERVING_MAX_INFERENCE_THREADS', '0'],
    ['SERVING_MAX_INFERENCE_THREADS', '65'],
    ['SERVING_MAX_INFERENCE_THREADS', '2.5'],
    ['SERVING_SESSION_THREADS', '0'],
    ['SERVING_SESSION_THREADS', '1000'],
    ['ROLLOUT_RECONCILE_EVERY_SECONDS', '1'],
  ])('rejects %s=%j with a ConfigError naming the variable', (variable, value) => {
    const error = configError({ [variable]: value });
    expect(error.name).toBe('ConfigError');
    expect(error.message).toContain(variable);
    expect(error.message).toContain(JSON.stringify(value));
    // A value can break more than one rule ("not a url" is no URL and no postgres:// URL): all about this variable.
    expect(new Set(error.issues.map((i) => i.variable))).toEqual(new Set([variable]));
    for (const issue of error.issues) expect(issue.problem).not.toBe('');
  });

  it('bounds the inference threads, saying the range in the error', () => {
    expect(loadConfig({ SERVING_MAX_INFERENCE_THREADS: '8', SERVING_SESSION_THREADS: '2' }, cwd).serving).toMatchObject(
      { maxInferenceThreads: 8, sessionThreads: 2 },
    );
    expect(configError({ SERVING_MAX_INFERENCE_THREADS: '1000' }).message).toMatch(/from 1 to 64/);
    expect(configError({ SERVING_SESSION_THREADS: '64' }).message).toMatch(/from 1 to 16/);
  });

  it('says what a malformed value should look like', () => {
    expect(configError({ TEMPORAL_ADDRESS: 'temporal' }).message).toMatch(/expected host:port/);
    expect(configError({ DATABASE_URL: 'mysql://db/x' }).message).toMatch(/postgres:\/\/ or postgresql:\/\//);
    expect(configError({ S3_BUCKET: 'Bad_Bucket' }).message).toMatch(/valid S3 bucket name/);
  });

  it('reports every malformed variable at once', () => {
    const error = configError({
      API_PORT: 'abc',
      S3_ENDPOINT: 'nope',
      S3_BUCKET: 'BAD',
      LOG_LEVEL: 'loud',
      TEMPORAL_ADDRESS: 'no-port',
      DATABASE_URL: 'https://example.com/db',
      POSTGRES_PORT: '99999',
    });
    const variables = error.issues.map((i) => i.variable).sort();
    expect(variables).toEqual(
      ['API_PORT', 'DATABASE_URL', 'LOG_LEVEL', 'POSTGRES_PORT', 'S3_BUCKET', 'S3_ENDPOINT', 'TEMPORAL_ADDRESS'].sort(),
    );
    for (const variable of variables) expect(error.message).toContain(`${variable}=`);
  });

  it('treats empty optional URLs and addresses as unset', () => {
    const config = loadConfig({ DATABASE_URL: '', S3_ENDPOINT: '  ', TEMPORAL_ADDRESS: '', MLOPS_TOOLS_DIR: '' }, cwd);
    expect(config.database.url).toBeUndefined();
    expect(config.s3.endpoint).toBeUndefined();
    expect(config.temporal.address).toBeUndefined();
    expect(config.toolsDir).toBe(defaultToolsDir());
  });

  it('resolves a relative MLOPS_DATA_DIR (and MLOPS_TOOLS_DIR) against the working directory', () => {
    const config = loadConfig({ MLOPS_DATA_DIR: 'state/dev', MLOPS_TOOLS_DIR: '../tools' }, cwd);
    expect(config.dataDir).toBe(path.join(cwd, 'state', 'dev'));
    expect(config.toolsDir).toBe(path.resolve(cwd, '../tools'));
    expect(loadConfig({ MLOPS_DATA_DIR: 'x' }).dataDir).toBe(path.join(process.cwd(), 'x'));
  });
});
