/**
 * Five-field cron expressions as pipeline schedules take them: parsed here so that a bad expression is a 400 naming
 * its field before Temporal sees it, and counted so that a backfill's size is known before it starts. The grammar is
 * the subset Temporal's own parser reads the same way: numbers, `*`, ranges, steps (`*\/15`, `1-30/5`, `5/10`), lists,
 * month and weekday names (`JAN`, `MON-FRI`, weekday 7 is Sunday) and `@yearly`, `@monthly`, `@weekly`, `@daily`,
 * `@hourly`. Like Temporal, a time matches when every field matches: day-of-month and day-of-week are not ORed.
 */
import { DomainError, type DomainErrorOptions } from '../core/errors.js';

/** The allowed values of each field of a parsed expression. */
export interface CronSchedule {
  readonly minute: ReadonlySet<number>;
  readonly hour: ReadonlySet<number>;
  readonly dayOfMonth: ReadonlySet<number>;
  readonly month: ReadonlySet<number>;
  /** 0 (Sunday) to 6. */
  readonly dayOfWeek: ReadonlySet<number>;
}

/** Thrown when a cron expression cannot be read; the message names the field and what is wrong with it. */
export class CronSyntaxError extends DomainError {
  override readonly name = 'CronSyntaxError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('invalid', message, { code: 'invalid_cron', ...options });
  }
}

const MACROS: Readonly<Record<string, string>> = {
  '@yearly': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@hourly': '0 * * * *',
};

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

interface FieldRule {
  readonly name: keyof CronSchedule;
  readonly min: number;
  readonly max: number;
  /** Names for values, the first for `min`. */
  readonly names?: readonly string[];
}

const FIELDS: readonly FieldRule[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'dayOfMonth', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: MONTHS },
  // 7 is Sunday too, as in most crons and in Temporal's.
  { name: 'dayOfWeek', min: 0, max: 7, names: WEEKDAYS },
];

function valueOf(text: string, rule: FieldRule): number {
  const named = rule.names?.indexOf(text.toLowerCase()) ?? -1;
  if (named >= 0) return rule.min + named;
  if (!/^\d{1,2}$/.test(text)) throw new CronSyntaxError(`${rule.name}: ${JSON.stringify(text)} is not a number`);
  const value = Number(text);
  if (value < rule.min || value > rule.max) {
    throw new CronSyntaxError(`${rule.name}: ${value} is outside ${rule.min}-${rule.max}`);
  }
  return value;
}

function parseField(text: string, rule: FieldRule): Set<number> {
  const values = new Set<number>();
  for (const part of text.split(',')) {
    const match = /^([^/]+)(?:\/(\d{1,2}))?$/.exec(part);
    if (!match) throw new CronSyntaxError(`${rule.name}: ${JSON.stringify(part)} is not a value, range or step`);
    const [, range = '', stepText] = match;
    const step = stepText === undefined ? 1 : Number(stepText);
    if (step < 1) throw new CronSyntaxError(`${rule.name}: the step must be at least 1`);
    let start: number;
    let end: number;
    if (range === '*') {
      [start, end] = [rule.min, rule.name === 'dayOfWeek' ? 6 : rule.max];
    } else if (range.includes('-')) {
      const [from = '', to = '', ...rest] = range.split('-');
      if (rest.length > 0) throw new CronSyntaxError(`${rule.name}: ${JSON.stringify(range)} is not a range`);
      [start, end] = [valueOf(from, rule), valueOf(to, rule)];
      if (end < start) throw new CronSyntaxError(`${rule.name}: the range ${range} ends before it starts`);
    } else {
      start = valueOf(range, rule);
      // `5/10` is "from 5, every 10" (Temporal's reading); a bare value is itself.
      end = stepText === undefined ? start : rule.max;
    }
    for (let v = start; v <= end; v += step) values.add(rule.name === 'dayOfWeek' ? v % 7 : v);
  }
  return values;
}

/**
 * Parses a five-field cron expression (minute hour day-of-month month day-of-week) or one of the `@` shorthands.
 *
 * @throws CronSyntaxError naming the field, when the expression is not one Temporal would read the same way.
 * @example parseCron('30 2 * * MON-FRI') // 02:30 on weekdays
 */
export function parseCron(expression: string): CronSchedule {
  const trimmed = expression.trim();
  const text = MACROS[trimmed.toLowerCase()] ?? trimmed;
  if (text.startsWith('@')) {
    throw new CronSyntaxError(
      `${JSON.stringify(trimmed)} is not a known shorthand (${Object.keys(MACROS).join(', ')}); use an interval for @every`,
    );
  }
  const parts = text.split(/\s+/);
  if (parts.length !== 5) {
    throw new CronSyntaxError(
      `expected 5 fields (minute hour day-of-month month day-of-week), got ${parts.length}: ${JSON.stringify(trimmed)}`,
    );
  }
  const [minute, hour, dayOfMonth, month, dayOfWeek] = FIELDS.map((rule, i) => parseField(parts[i] ?? '', rule));
  return {
    minute: minute ?? new Set(),
    hour: hour ?? new Set(),
    dayOfMonth: dayOfMonth ?? new Set(),
    month: month ?? new Set(),
    dayOfWeek: dayOfWeek ?? new Set(),
  };
}

/** Time zone offsets change on quarter hours (UTC) at most, so one lookup serves a quarter hour of minutes. */
const OFFSET_BLOCK_MS = 15 * 60_000;

/** The offset of `timezone` from UTC at each instant, in ms, looked up once per quarter hour. */
function offsetsOf(timezone: string): (at: number) => number {
  if (timezone === 'UTC') return () => 0;
  const format = new Intl.DateTimeFormat('en-US', {
    timeZone: timezone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
  });
  let block = Number.NaN;
  let offset = 0;
  return (at) => {
    const current = Math.floor(at / OFFSET_BLOCK_MS);
    if (current !== block) {
      block = current;
      const start = current * OFFSET_BLOCK_MS;
      const parts = Object.fromEntries(format.formatToParts(new Date(start)).map((p) => [p.type, Number(p.value)]));
      const wall = Date.UTC(parts.year ?? 0, (parts.month ?? 1) - 1, parts.day, (parts.hour ?? 0) % 24, parts.minute);
      offset = wall - start;
    }
    return offset;
  };
}

const MINUTE_MS = 60_000;
const DAY_MINUTES = 24 * 60;

/** The smallest value of `sorted` above `value`, or undefined. */
const nextAbove = (sorted: readonly number[], value: number) => sorted.find((v) => v > value);

/**
 * How many times the expression fires from `start` to `end`, both included (a backfill's range), reading wall-clock
 * time in `timezone`; stops counting past `limit`.
 *
 * Walks from one candidate to the next rather than minute by minute: a day that does not match is skipped whole, an
 * hour that does not match is skipped to the next that does, so the work grows with the days of the range and the
 * matches counted (at most `limit + 1`), not with its minutes; years of a daily schedule count in milliseconds. A
 * wall-clock time that a daylight saving change skips does not fire, one that it repeats fires twice (once per
 * instant), as minute by minute.
 *
 * @returns the count, or `limit + 1` when there are more than `limit`.
 */
export function countCronTimes(cron: CronSchedule, timezone: string, start: Date, end: Date, limit: number): number {
  const offsetAt = offsetsOf(timezone);
  const hours = [...cron.hour].sort((a, b) => a - b);
  const minutes = [...cron.minute].sort((a, b) => a - b);
  const last = end.getTime();
  let count = 0;
  let t = Math.ceil(start.getTime() / MINUTE_MS) * MINUTE_MS;
  while (t <= last) {
    const offset = offsetAt(t);
    const local = new Date(t + offset);
    const hour = local.getUTCHours();
    const minute = local.getUTCMinutes();
    const minuteOfDay = hour * 60 + minute;
    // Wall-clock minutes to the next time that may match.
    let ahead: number;
    if (
      !cron.dayOfMonth.has(local.getUTCDate()) ||
      !cron.month.has(local.getUTCMonth() + 1) ||
      !cron.dayOfWeek.has(local.getUTCDay())
    ) {
      ahead = DAY_MINUTES - minuteOfDay;
    } else if (!cron.hour.has(hour)) {
      const next = nextAbove(hours, hour);
      ahead = next === undefined ? DAY_MINUTES - minuteOfDay : (next - hour) * 60 - minute;
    } else if (!cron.minute.has(minute)) {
      const next = nextAbove(minutes, minute);
      ahead = next === undefined ? 60 - minute : next - minute;
    } else {
      count += 1;
      if (count > limit) return count;
      ahead = 1;
    }
    const next = t + ahead * MINUTE_MS;
    // Wall-clock minutes are instants' minutes only while the offset holds: when it changed on the way (a daylight
    // saving change), go no further than the next quarter hour (offsets change on quarter hours) and look again.
    t = ahead === 1 || offsetAt(next) === offset ? next : (Math.floor(t / OFFSET_BLOCK_MS) + 1) * OFFSET_BLOCK_MS;
  }
  return count;
}

/**
 * How many times an interval schedule fires from `start` to `end`, both included: Temporal's interval times are the
 * multiples of `everySeconds` since the Unix epoch, shifted by `offsetSeconds`.
 */
export function countIntervalTimes(everySeconds: number, offsetSeconds: number, start: Date, end: Date): number {
  const every = everySeconds * 1000;
  const offset = offsetSeconds * 1000;
  const first = Math.ceil((start.getTime() - offset) / every);
  const last = Math.floor((end.getTime() - offset) / every);
  return Math.max(0, last - first + 1);
}
