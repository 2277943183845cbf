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
  const logger = createLogger({ level: 'info', name: 'provision' });
  try {
    const config = loadConfig();
    // Sequential: two Go builds at once on a small machine are slower than one after the other.
    for (const tool of REQUIRED_TOOLS) {
      const started = Date.now();
      const binary = await ensureBinary(tool, { toolsDir: config.toolsDir, logger });
      logger.info({ tool: tool.binary, binary, ms: Date.now() - started }, `${tool.binary} ready`);
    }
  } catch (error) {
    exitWithError(logger, error);
  }
}

void main();
