/**
 * The workers' Temporal SDK metrics: the configuration (WORKER_METRICS_HOST/PORT), the exporter options, and the
 * runtime serving them, or running without them when the port is taken. The runtime is installed once per process,
 * so each live check runs in a child process of its own, on a port picked free (never a fixed one).
 * test/integration/platform-metrics.test.ts scrapes a real worker's `temporal_*` metrics.
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../core/errors.js';
import { bindAddressOf, loadConfig } from '../../core/config.js';
import { findFreePort } from '../../stack/ports.js';
import { prometheusTelemetry } from '../../workers/runtime.js';

describe('worker metrics configuration', () => {
  it('serves on 127.0.0.1:9464 by default, on the host and port given, and not at all on port 0', () => {
    expect(loadConfig({}).worker.metricsBindAddress).toBe('127.0.0.1:9464');
    expect(loadConfig({ WORKER_METRICS_HOST: '0.0.0.0', WORKER_METRICS_PORT: '9500' }).worker.metricsBindAddress).toBe(
      '0.0.0.0:9500',
    );
    expect(loadConfig({ WORKER_METRICS_PORT: '0' }).worker.metricsBindAddress).toBeUndefined();
    expect(bindAddressOf('::1', 9464)).toBe('[::1]:9464');
    expect(bindAddressOf('[::]', 9464)).toBe('[::]:9464');
  });

  it.each(['-1', '65536', '12.5', 'metrics'])('refuses WORKER_METRICS_PORT=%s, naming the variable', (value) => {
    expect(() => loadConfig({ WORKER_METRICS_PORT: value })).toThrow(ConfigError);
    expect(() => loadConfig({ WORKER_METRICS_PORT: value })).toThrow(/WORKER_METRICS_PORT=.*0 for no worker metrics/);
  });

  it('asks the SDK for Prometheus names: seconds, unit suffixes, counters ending in _total', () => {
    expect(prometheusTelemetry('127.0.0.1:9464')).toEqual({
      metrics: {
        prometheus: {
          bindAddress: '127.0.0.1:9464',
          countersTotalSuffix: true,
          unitSuffix: true,
          useSecondsForDurations: true,
        },
      },
    });
  });
});

/** Installs the runtime in a child process with the given address, then scrapes it; reports what it logged. */
const CHILD = `
import { installTemporalRuntime } from './workers/runtime.js';
const logged = [];
const note = (level) => (fields, message) => logged.push({ level, message, error: fields?.err?.message });
const logger = { trace() {}, debug() {}, info: note('info'), warn: note('warn'), error: note('error') };
installTemporalRuntime(logger, 'warn', { metricsBindAddress: process.env.METRICS_ADDRESS });
const url = 'http://' + process.env.METRICS_ADDRESS + '/metrics';
const served = logged.every((entry) => entry.level === 'info');
const response = served ? await fetch(url, { signal: AbortSignal.timeout(5000) }) : undefined;
console.log(JSON.stringify({ logged, status: response?.status, contentType: response?.headers.get('content-type') }));
process.exit(0);
`;

interface ChildReport {
  logged: { level: string; message: string; error?: string }[];
  status?: number;
  contentType?: string;
}

async function installInChild(address: string): Promise<ChildReport> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', CHILD],
    { env: { ...process.env, METRICS_ADDRESS: address }, timeout: 50_000 },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as ChildReport;
}

// A child loads tsx and the SDK's native module: seconds each on a busy machine.
describe('the Temporal runtime with metrics', { timeout: 60_000 }, () => {
  it('serves Prometheus text on the configured address', async () => {
    const address = `127.0.0.1:${await findFreePort()}`;
    const report = await installInChild(address);
    expect(report.status).toBe(200);
    expect(report.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(report.logged).toEqual([
      { level: 'info', message: 'Temporal SDK metrics served for Prometheus', error: undefined },
    ]);
  });

  it('runs without the exporter, with a warning, when the port is taken', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = taken.address() as net.AddressInfo;
      const report = await installInChild(`127.0.0.1:${port}`);
      expect(report.logged).toHaveLength(1);
      expect(report.logged[0]).toMatchObject({ level: 'warn', error: expect.stringMatching(/in use/) });
      expect(report.logged[0]?.message).toMatch(/could not serve the Temporal SDK metrics/);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});
