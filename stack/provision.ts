import path from 'node:path';
import { createCliOutput } from '../core/cli-output.js';
import { loadConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { exitWithError } from '../core/shutdown.js';
import { REQUIRED_TOOLS, ensureBinary } from './binaries.js';

/**
 * `npm run provision`: makes sure the Temporal CLI and MinIO binaries exist, building them with `go install` when
 * they are missing (minutes, once per machine). `npm start` and the tests do the same on demand; CI runs it as its
 * own phase so the build time is visible.
 */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    exitWithError(createLogger({ level: 'info', name: 'provision' }), error);
  }
  const output = createCliOutput({
    name: 'provision',
    level: config.logLevel,
    format: config.logFormat,
    logDir: path.join(config.dataDir, 'logs'),
    logFileName: 'provision.log',
  });
  const { logger } = output;
  try {
    // Sequential: two Go builds at once on a small machine are slower than one after the other.
    for (const tool of REQUIRED_TOOLS) {
      const started = Date.now();
      let fetched = false;
      const binary = await ensureBinary(tool, {
        toolsDir: config.toolsDir,
        logger,
        downloads: config.binaryDownloads,
        task: (text) => {
          fetched = true;
          return output.task(text);
        },
      });
      logger.info({ tool: tool.binary, binary, ms: Date.now() - started }, `${tool.binary} ready`);
      if (output.mode === 'human' && !fetched) output.print(`${tool.binary}: already there, ${binary}`);
    }
  } catch (error) {
    output.close();
    exitWithError(logger, error);
  }
}

void main();
