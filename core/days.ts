/**
 * UTC calendar days as `YYYY-MM-DD` text: how the prediction log is partitioned, exported and retained. Pure, so
 * workflow code may use it too.
 */

/** A UTC day, `YYYY-MM-DD`. */
export type Day = string;

const DAY_PATTERN = /^\d{4}-\d{2}-\d{2}$/;
const DAY_MS = 86_400_000;

/** Whether `value` is a real calendar day in `YYYY-MM-DD` form (not 2026-02-30). */
export function isDay(value: string): value is Day {
  return DAY_PATTERN.test(value) && new Date(`${value}T00:00:00Z`).toISOString().startsWith(value);
}

/** The UTC day `time` falls on. */
export function dayOf(time: Date | number): Day {
  return new Date(time).toISOString().slice(0, 10);
}

/** Midnight UTC at the start of `day`. */
export function dayStart(day: Day): Date {
  if (!isDay(day)) throw new Error(`not a day (YYYY-MM-DD): ${day}`);
  return new Date(`${day}T00:00:00Z`);
}

/** `day` moved by `days` (negative: back). */
export function addDays(day: Day, days: number): Day {
  return dayOf(dayStart(day).getTime() + days * DAY_MS);
}

/**
 * The days that `[start, end)` touches, oldest first; none when `end <= start`.
 *
 * @example daysOverlapping(new Date('2026-03-01T12:00Z'), new Date('2026-03-03T00:00Z')) // ['2026-03-01', '2026-03-02']
 */
export function daysOverlapping(start: Date, end: Date): Day[] {
  if (end.getTime() <= start.getTime()) return [];
  const days: Day[] = [];
  const last = dayOf(end.getTime() - 1);
  for (let day = dayOf(start); day <= last; day = addDays(day, 1)) days.push(day);
  return days;
}
