import { styleText } from 'node:util';
import { createLogUpdate } from 'log-update';

/** One line of work in progress (a binary being built, a service starting): updated, then settled. */
export interface TaskLine {
  /** Replaces the task's text; the elapsed time is added when it is drawn. */
  update(text: string): void;
  /** Settles the task as done, with a final line that stays in the scrollback. */
  succeed(text: string): void;
  /** Settles the task as failed, with a final line that stays in the scrollback. */
  fail(text: string): void;
}

const SPINNER_FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const FRAME_MS = 120;

/** `2m05s`, `9s`: how long something has taken, the way people read it. */
export function formatElapsed(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
}

interface ActiveTask {
  text: string;
  readonly startedAt: number;
}

/**
 * Lines for people on a terminal: permanent lines that scroll, and below them a live region with one line per task
 * in progress, redrawn in place (log-update) with a spinner and the elapsed time. When the stream is not a
 * terminal, nothing is redrawn: a task prints its first line and its final one, so logs and CI output stay readable.
 */
export class LiveLines {
  private readonly tasks = new Map<number, ActiveTask>();
  private readonly render: ReturnType<typeof createLogUpdate> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private frame = 0;
  private nextId = 0;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    // A terminal that reports no size (a pseudo-terminal nobody sized) cannot be redrawn in place.
    private readonly interactive = stream.isTTY === true && stream.columns > 0 && stream.rows > 0,
  ) {
    this.render = interactive ? createLogUpdate(stream) : undefined;
  }

  /** A permanent line (or several), printed above the tasks in progress. */
  print(text: string): void {
    const body = text.endsWith('\n') ? text.slice(0, -1) : text;
    if (this.render && this.tasks.size > 0) {
      this.render.persist(body);
      this.draw();
    } else {
      this.stream.write(`${body}\n`);
    }
  }

  /** Starts a task line; it stays live until it succeeds or fails. */
  task(text: string): TaskLine {
    const id = this.nextId++;
    this.tasks.set(id, { text, startedAt: Date.now() });
    if (this.render) {
      this.timer ??= setInterval(() => this.draw(), FRAME_MS).unref();
      this.draw();
    } else {
      this.stream.write(`${text}\n`);
    }
    const settle = (mark: string, final: string) => {
      const task = this.tasks.get(id);
      if (!task) return;
      this.tasks.delete(id);
      if (this.tasks.size === 0) this.stop();
      this.print(`${mark} ${final}`);
    };
    return {
      update: (next) => {
        const task = this.tasks.get(id);
        if (task) task.text = next;
      },
      succeed: (final) => settle(this.paint('green', '✔'), final),
      fail: (final) => settle(this.paint('red', '✖'), final),
    };
  }

  /** Clears the live region (tasks still open are dropped from view); safe to call more than once. */
  close(): void {
    this.tasks.clear();
    this.stop();
  }

  private paint(color: 'green' | 'red' | 'cyan' | 'dim', text: string): string {
    return this.interactive ? styleText(color, text) : text;
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.render?.clear();
  }

  private draw(): void {
    if (!this.render) return;
    if (this.tasks.size === 0) {
      this.render.clear();
      return;
    }
    this.frame = (this.frame + 1) % SPINNER_FRAMES.length;
    const spinner = this.paint('cyan', SPINNER_FRAMES[this.frame]!);
    const now = Date.now();
    const lines = [...this.tasks.values()].map(
      (task) => `${spinner} ${task.text} ${this.paint('dim', `· ${formatElapsed(now - task.startedAt)}`)}`,
    );
    this.render(lines.join('\n'));
  }
}
