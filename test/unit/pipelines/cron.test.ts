import { describe, expect, it } from 'vitest';
import {
  countCronTimes,
  countIntervalTimes,
  CronSyntaxError,
  parseCron,
  type CronSchedule,
} from '../../../pipelines/cron.js';
import { checkScheduleSettings, isKnownTimeZone, timeZoneProblem } from '../../../pipelines/schedules.js';

const sorted = (values: ReadonlySet<number>) => [...values].sort((a, b) => a - b);
const at = (iso: string) => new Date(iso);

describe('parseCron', () => {
  it('reads values, ranges, steps, lists, names and shorthands as Temporal does', () => {
    expect(sorted(parseCron('*/15 * * * *').minute)).toEqual([0, 15, 30, 45]);
    expect(sorted(parseCron('1-30/10 * * * *').minute)).toEqual([1, 11, 21]);
    // `5/20` is "from 5, every 20" (Temporal compiles `1/5` to 1-59/5).
    expect(sorted(parseCron('5/20 * * * *').minute)).toEqual([5, 25, 45]);
    expect(sorted(parseCron('0 12 * * MON-WED,FRI').dayOfWeek)).toEqual([1, 2, 3, 5]);
    expect(sorted(parseCron('0 0 1 jan,Jul *').month)).toEqual([1, 7]);
    // 7 is Sunday, like 0.
    expect(sorted(parseCron('0 0 * * 5-7').dayOfWeek)).toEqual([0, 5, 6]);
    expect(sorted(parseCron('0 0 * * *').dayOfWeek)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(parseCron('@daily')).toEqual(parseCron('0 0 * * *'));
    expect(parseCron('  @HOURLY ')).toEqual(parseCron('0 * * * *'));
  });

  it.each([
    ['hello', /5 fields/],
    ['* * * *', /5 fields .*got 4/],
    ['* * * * * *', /5 fields .*got 6/],
    ['61 * * * *', /minute: 61 is outside 0-59/],
    ['* 24 * * *', /hour: 24 is outside 0-23/],
    ['* * 0 * *', /dayOfMonth: 0 is outside 1-31/],
    ['* * * 13 *', /month: 13 is outside 1-12/],
    ['* * * * 8', /dayOfWeek: 8 is outside 0-7/],
    ['*/0 * * * *', /minute: the step must be at least 1/],
    ['5-3 * * * *', /minute: the range 5-3 ends before it starts/],
    ['0 0 ? * *', /dayOfMonth: "\?" is not a number/],
    ['0 0 L * *', /dayOfMonth: "L" is not a number/],
    ['@every 10s', /not a known shorthand/],
    ['0 0 * * * # comment', /5 fields/],
  ])('refuses %j naming the field', (expression, message) => {
    expect(() => parseCron(expression)).toThrow(CronSyntaxError);
    expect(() => parseCron(expression)).toThrow(message);
  });
});

describe('countCronTimes', () => {
  it('counts both ends of the range, in UTC', () => {
    const everyMinute = parseCron('* * * * *');
    expect(countCronTimes(everyMinute, 'UTC', at('2024-01-01T10:00:00Z'), at('2024-01-01T10:05:00Z'), 100)).toBe(6);
    expect(countCronTimes(everyMinute, 'UTC', at('2024-01-01T10:00:30Z'), at('2024-01-01T10:05:30Z'), 100)).toBe(5);
    const weekdays = parseCron('0 2 * * MON-FRI');
    // 1 to 14 January 2024: two full weeks, ten weekdays.
    expect(countCronTimes(weekdays, 'UTC', at('2024-01-01T00:00:00Z'), at('2024-01-14T23:59:00Z'), 100)).toBe(10);
  });

  it('reads wall-clock time in the time zone, across a daylight saving change', () => {
    const twoThirty = parseCron('30 2 * * *');
    // Paris skipped 02:00-03:00 on 31 March 2024: no 02:30 that day.
    expect(countCronTimes(twoThirty, 'Europe/Paris', at('2024-03-29T00:00:00Z'), at('2024-04-02T00:00:00Z'), 100)).toBe(
      3,
    );
    const midnight = parseCron('0 0 * * *');
    // Paris midnight is 23:00 UTC in winter.
    expect(countCronTimes(midnight, 'Europe/Paris', at('2024-01-01T22:59:00Z'), at('2024-01-01T23:00:00Z'), 9)).toBe(1);
    expect(countCronTimes(midnight, 'UTC', at('2024-01-01T22:59:00Z'), at('2024-01-01T23:00:00Z'), 9)).toBe(0);
  });

  /** Minute by minute, the obvious way: what the fast count must agree with. */
  function countMinuteByMinute(cron: CronSchedule, timezone: string, start: Date, end: Date): number {
    const format = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      weekday: 'short',
      hour: 'numeric',
      minute: 'numeric',
    });
    const weekdays = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
    let count = 0;
    for (let t = Math.ceil(start.getTime() / 60_000) * 60_000; t <= end.getTime(); t += 60_000) {
      const parts = Object.fromEntries(format.formatToParts(new Date(t)).map((p) => [p.type, p.value]));
      if (
        cron.minute.has(Number(parts.minute)) &&
        cron.hour.has(Number(parts.hour)) &&
        cron.dayOfMonth.has(Number(parts.day)) &&
        cron.month.has(Number(parts.month)) &&
        cron.dayOfWeek.has(weekdays.indexOf(parts.weekday ?? ''))
      ) {
        count += 1;
      }
    }
    return count;
  }

  it.each([
    ['30 2 * * *', 'Europe/Paris', '2024-03-28T00:00:00Z', '2024-04-02T00:00:00Z'],
    ['30 2 * * *', 'Europe/Paris', '2024-10-25T00:00:00Z', '2024-10-29T00:00:00Z'],
    ['*/20 1-3 * * SUN', 'America/New_York', '2024-03-09T00:00:00Z', '2024-03-12T00:00:00Z'],
    ['*/20 0-3 * * SUN', 'America/New_York', '2024-11-02T00:00:00Z', '2024-11-05T00:00:00Z'],
    ['0,15,45 2 * * *', 'Australia/Lord_Howe', '2024-04-04T00:00:00Z', '2024-04-09T00:00:00Z'],
    ['0,15,45 2 * * *', 'Australia/Lord_Howe', '2024-10-04T00:00:00Z', '2024-10-08T00:00:00Z'],
    // A whole day skipped across a change: the next day's first hour must not be skipped with it.
    ['30 0 * * MON', 'America/New_York', '2024-03-09T00:00:00Z', '2024-03-13T00:00:00Z'],
    ['10 0,23 * * MON', 'Europe/Paris', '2024-10-26T00:00:00Z', '2024-10-30T00:00:00Z'],
    ['5 23 * * *', 'Asia/Kathmandu', '2024-01-01T00:00:00Z', '2024-01-04T00:00:00Z'],
    ['7 3 29 2 *', 'UTC', '2024-02-27T00:00:00Z', '2024-03-02T00:00:00Z'],
    ['0 0 1,15 * MON-FRI', 'Europe/Paris', '2024-02-28T00:00:00Z', '2024-03-16T00:00:00Z'],
    ['59 23 31 * *', 'Pacific/Chatham', '2024-03-30T00:00:00Z', '2024-04-08T00:00:00Z'],
    ['*/7 */5 * * *', 'UTC', '2024-01-01T00:03:10Z', '2024-01-02T13:00:00Z'],
  ])('counts %j in %s as minute by minute does', (expression, zone, from, to) => {
    const cron = parseCron(expression);
    expect(countCronTimes(cron, zone, at(from), at(to), 100_000)).toBe(
      countMinuteByMinute(cron, zone, at(from), at(to)),
    );
  });

  it('counts years of a sparse schedule at once, so a backfill is limited by its actions, not its length', () => {
    const weekdays = parseCron('0 2 * * MON-FRI');
    const start = at('2020-01-01T00:00:00Z');
    const end = at('2024-12-31T23:59:00Z');
    let expected = 0;
    for (let day = start.getTime(); day <= end.getTime(); day += 86_400_000) {
      const weekday = new Date(day).getUTCDay();
      if (weekday >= 1 && weekday <= 5) expected += 1;
    }
    const began = performance.now();
    // Paris changes its clocks on Sundays: every weekday has its 02:00.
    expect(countCronTimes(weekdays, 'Europe/Paris', start, end, 10_000)).toBe(expected);
    expect(countCronTimes(parseCron('@yearly'), 'UTC', start, end, 1000)).toBe(5);
    expect(performance.now() - began).toBeLessThan(10_000);
  });

  it('stops past the limit', () => {
    const everyMinute = parseCron('* * * * *');
    expect(countCronTimes(everyMinute, 'UTC', at('2024-01-01T00:00:00Z'), at('2024-02-01T00:00:00Z'), 1000)).toBe(1001);
  });
});

describe('countIntervalTimes', () => {
  it('counts multiples of the interval since the epoch, shifted by the offset, both ends included', () => {
    expect(countIntervalTimes(60, 0, at('2024-01-01T10:00:00Z'), at('2024-01-01T10:05:00Z'))).toBe(6);
    expect(countIntervalTimes(60, 30, at('2024-01-01T10:00:00Z'), at('2024-01-01T10:05:00Z'))).toBe(5);
    expect(countIntervalTimes(3600, 0, at('2024-01-01T10:00:01Z'), at('2024-01-01T10:59:59Z'))).toBe(0);
  });
});

describe('checkScheduleSettings', () => {
  const base = { timezone: 'UTC', jitterSeconds: 0, overlap: 'skip', catchupWindowSeconds: 60 } as const;

  it('accepts one timing and a known time zone', () => {
    expect(() => checkScheduleSettings({ ...base, cron: '0 2 * * *', timezone: 'Europe/Paris' })).not.toThrow();
    expect(() => checkScheduleSettings({ ...base, interval: { everySeconds: 60, offsetSeconds: 5 } })).not.toThrow();
  });

  it('names the field it refuses', () => {
    expect(() => checkScheduleSettings(base)).toThrow(/body\.cron: give exactly one of cron and interval/);
    expect(() =>
      checkScheduleSettings({ ...base, cron: '* * * * *', interval: { everySeconds: 60, offsetSeconds: 0 } }),
    ).toThrow(/body\.cron/);
    expect(() => checkScheduleSettings({ ...base, cron: '99 * * * *' })).toThrow(/body\.cron: minute: 99/);
    expect(() => checkScheduleSettings({ ...base, interval: { everySeconds: 60, offsetSeconds: 60 } })).toThrow(
      /body\.interval\.offsetSeconds/,
    );
    expect(() => checkScheduleSettings({ ...base, cron: '* * * * *', timezone: 'Mars/Olympus' })).toThrow(
      /body\.timezone/,
    );
  });

  it('knows IANA zones, not offsets or made-up names', () => {
    for (const zone of ['UTC', 'Europe/Paris', 'America/Argentina/Buenos_Aires', 'Etc/GMT+5']) {
      expect(isKnownTimeZone(zone), zone).toBe(true);
    }
    for (const zone of ['+01:00', 'Not/AZone', '', 'Europe/../Paris', 'UTC; drop']) {
      expect(isKnownTimeZone(zone), zone).toBe(false);
    }
  });

  it('refuses a zone spelled in another case than the database, suggesting its spelling', () => {
    // Intl reads them, Temporal's server does not (zone names are case-sensitive there).
    for (const [zone, spelling] of [
      ['europe/paris', 'Europe/Paris'],
      ['EUROPE/PARIS', 'Europe/Paris'],
      ['Europe/paris', 'Europe/Paris'],
      ['utc', 'UTC'],
    ] as const) {
      expect(isKnownTimeZone(zone), zone).toBe(false);
      expect(timeZoneProblem(zone)).toContain(`use "${spelling}"`);
    }
    expect(() => checkScheduleSettings({ ...base, cron: '* * * * *', timezone: 'europe/paris' })).toThrow(
      /body\.timezone: "europe\/paris" is not spelled as .* use "Europe\/Paris"/,
    );
    // Links the database has are taken as spelled.
    for (const zone of ['Asia/Kolkata', 'Etc/UTC', 'US/Eastern', 'America/Port-au-Prince', 'Africa/Dar_es_Salaam']) {
      expect(isKnownTimeZone(zone), zone).toBe(true);
    }
  });
});
