/**
 * `npm run demo:monitoring`: the closed-loop demo (demo/monitoring.ts) against a running platform (`npm start`):
 * replays April–June 2001 through the predict API, sends the true labels, computes monitoring windows, lands a
 * shifted batch and shows the monitor starting one retraining run. Calls the API with the admin key `npm start`
 * created (`MLOPS_API_KEY` overrides it).
 */
import fs from 'node:fs';
import path from 'node:path';
import { createCliOutput, resolveOutputMode } from '../core/cli-output.js';
import { loadConfig, type AppConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { exitWithError } from '../core/shutdown.js';
import { adminKeyFile } from '../server/admin-key.js';
import { resolveEndpoints } from '../stack/endpoints.js';
import { formatDemoFailure } from './flights.js';
import { formatMonitoringReport, runMonitoringDemo } from './monitoring.js';
import { openDemoSession, type DemoSession } from './session.js';

/** The API's URL as a client on this host reaches it. */
function apiUrlOf(config: AppConfig): string {
  const host = config.api.host === '0.0.0.0' || config.api.host === '::' ? '127.0.0.1' : config.api.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.api.port}`;
}

function apiKeyOf(config: AppConfig): string {
  const fromEnv = process.env.MLOPS_API_KEY;
  if (fromEnv) return fromEnv;
  const file = adminKeyFile(config.dataDir);
  if (!fs.existsSync(file)) {
    throw new Error(`no API key: set MLOPS_API_KEY, or start the platform with \`npm start\` (it writes ${file})`);
  }
  return fs.readFileSync(file, 'utf8').trim();
}

async function main(): Promise<void> {
  let config: AppConfig;
  let key: string;
  try {
    config = loadConfig();
    key = apiKeyOf(config);
  } catch (error) {
    exitWithError(createLogger({ level: 'info', name: 'demo' }), error);
  }
  const quietJson = resolveOutputMode(config.logFormat) === 'json' && config.logLevel === 'info';
  const output = createCliOutput({
    name: 'demo',
    level: quietJson ? 'warn' : config.logLevel,
    format: config.logFormat,
    logDir: path.join(config.dataDir, 'logs'),
    logFileName: 'demo.log',
  });
  const endpoints = resolveEndpoints(config);
  const controller = new AbortController();
  const onSignal = () => controller.abort(new Error('interrupted'));
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let session: DemoSession;
  try {
    session = await openDemoSession({ config, endpoints, apiUrl: apiUrlOf(config), logger: output.logger });
  } catch (error) {
    process.stderr.write(
      `temporal-mlops demo: cannot reach the platform (${String(error)}); is it running (\`npm start\`)?\n`,
    );
    process.exit(1);
  }
  try {
    const rowsPerMonth = Number(process.env.DEMO_ROWS_PER_MONTH ?? 3000);
    const report = await runMonitoringDemo(session.deps, {
      api: { url: apiUrlOf(config), key },
      rowsPerMonth,
      signal: controller.signal,
      onProgress: (line) => output.print(line),
    });
    output.print(`\n${formatMonitoringReport(report)}`);
  } catch (error) {
    process.stderr.write(`${formatDemoFailure(error)}\n`);
    process.exitCode = 1;
  } finally {
    await session.close();
  }
}

void main();
