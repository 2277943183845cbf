import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import pretty from 'pino-pretty';
import { LiveLines, type TaskLine } from './live-lines.js';
import { createLogger, type Logger } from './logger.js';

export type { TaskLine };

/** `LOG_FORMAT`: `auto` is human lines on a terminal and JSON otherwise. */
export type LogFormat = 'auto' | 'json' | 'human';

/** What a command-line process (`npm start`, the demo, a worker) shows: who reads it decides its shape. */
export interface CliOutput {
  /** `human`: short lines on the terminal, JSON logs in `logFile`. `json`: JSON log lines on stdout, as services log. */
  readonly mode: 'human' | 'json';
  readonly logger: Logger;
  /** Where the structured logs go in human mode; undefined in json mode (they go to stdout). */
  readonly logFile: string | undefined;
  /** A line for people (the ready banner, the demo's report): printed in both modes. */
  print(text: string): void;
  /**
   * A task in progress (a binary being built): a line redrawn in place on a terminal. In json mode nothing is
   * drawn; the code doing the work logs its progress as structured lines instead.
   */
  task(text: string): TaskLine;
  /** Clears the live region, so a final message prints on a clean line. */
  close(): void;
}

export interface CliOutputOptions {
  /** The logger's `service` field. */
  readonly name: string;
  readonly level: string;
  readonly format: LogFormat;
  /** The folder for the JSON log file in human mode (`<data dir>/logs`). */
  readonly logDir: string;
  /** The file's name in `logDir`, `platform.log` for example. */
  readonly logFileName: string;
  /** The terminal; standard output unless a test hands another stream. */
  readonly stdout?: NodeJS.WriteStream;
}

const NO_TASK: TaskLine = { update: () => undefined, succeed: () => undefined, fail: () => undefined };

/** `json` unless the format says human, or says auto and the output is a terminal. */
export function resolveOutputMode(format: LogFormat, stdout: NodeJS.WriteStream = process.stdout): 'human' | 'json' {
  if (format === 'auto') return stdout.isTTY === true ? 'human' : 'json';
  return format;
}

/**
 * The logger and the human output of a command-line process. On a terminal (or with `LOG_FORMAT=human`), the JSON
 * logs go to a file under the data directory and the terminal gets short lines: what the process says to people,
 * tasks redrawn in place, and warnings and errors pretty-printed (pino-pretty) above them. Otherwise (CI, pipes,
 * containers, `LOG_FORMAT=json`) every log line is JSON on stdout, as before.
 */
export function createCliOutput(options: CliOutputOptions): CliOutput {
  const stdout = options.stdout ?? process.stdout;
  const mode = resolveOutputMode(options.format, stdout);
  if (mode === 'json') {
    return {
      mode,
      logger: createLogger({ level: options.level, name: options.name }),
      logFile: undefined,
      print: (text) => void stdout.write(text.endsWith('\n') ? text : `${text}\n`),
      task: () => NO_TASK,
      close: () => undefined,
    };
  }

  const live = new LiveLines(stdout);
  const logFile = path.join(options.logDir, options.logFileName);
  const file = pino.destination({ dest: logFile, mkdir: true, sync: false });
  const terminal = pretty({
    destination: new Writable({
      write(chunk: Buffer, _encoding, done) {
        live.print(chunk.toString('utf8'));
        done();
      },
    }),
    sync: true,
    colorize: stdout.isTTY === true,
    translateTime: 'SYS:HH:MM:ss',
    hideObject: true,
    // The error's message on the same line; its stack and fields are in the log file.
    messageFormat: '{msg}{if err.message}: {err.message}{end}',
  });
  const logger = createLogger({
    level: options.level,
    name: options.name,
    destination: pino.multistream([
      { level: 'trace', stream: file },
      { level: 'warn', stream: terminal },
    ]),
  });
  return {
    mode,
    logger,
    logFile,
    print: (text) => live.print(text),
    task: (text) => live.task(text),
    close: () => live.close(),
  };
}
