/** The medians over the measured rounds, per scenario, and the table they are printed as. */
import { fmtCores, fmtInt, fmtMs } from './format.js';
import type { LoadSample } from './load.js';
import type { Scenario } from './scenarios.js';

/** The median of the finite `values` (NaN when there are none). */
export function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (finite.length === 0) return Number.NaN;
  const mid = (finite.length - 1) / 2;
  return (finite[Math.floor(mid)]! + finite[Math.ceil(mid)]!) / 2;
}

/** A scenario over its rounds: medians, except counts (summed) and the range of req/s. */
export type Summary = { readonly [K in Exclude<keyof LoadSample, 'slowest'>]: number } & {
  readonly reqPerSecMin: number;
  readonly reqPerSecMax: number;
};

export function summarizeSamples(samples: readonly LoadSample[]): Summary {
  const m = (key: Exclude<keyof LoadSample, 'slowest'>) => median(samples.map((s) => s[key] ?? Number.NaN));
  const sum = (key: 'errors' | 'timeouts' | 'non2xx' | 'requests') => samples.reduce((a, s) => a + s[key], 0);
  const rates = samples.map((s) => s.reqPerSec);
  return {
    seconds: m('seconds'),
    requests: sum('requests'),
    reqPerSec: m('reqPerSec'),
    reqPerSecMin: Math.min(...rates),
    reqPerSecMax: Math.max(...rates),
    rowsPerSec: m('rowsPerSec'),
    p50: m('p50'),
    p90: m('p90'),
    p99: m('p99'),
    max: m('max'),
    errors: sum('errors'),
    timeouts: sum('timeouts'),
    non2xx: sum('non2xx'),
    serverCores: m('serverCores'),
    serverEventLoop: m('serverEventLoop'),
    serverLoopMaxDelayMs: m('serverLoopMaxDelayMs'),
    rowsPerRun: m('rowsPerRun'),
    generatorCores: m('generatorCores'),
    machineCores: m('machineCores'),
  };
}

/** A plain-text table, a row per scenario; text left-aligned, numbers right-aligned. */
export function formatSummaryTable(rows: readonly { scenario: Scenario; summary: Summary }[]): string {
  const header = [
    'scenario',
    'req/s',
    '(min–max)',
    'rows/s',
    'p50 ms',
    'p90 ms',
    'p99 ms',
    'max ms',
    'failed',
    'server cores',
    'loop busy',
    'loop stall ms',
    'rows/run',
    'cannon cores',
    'machine cores',
  ];
  const body = rows.map(({ scenario, summary: s }) => [
    scenario.label,
    fmtInt(s.reqPerSec),
    `${fmtInt(s.reqPerSecMin)}–${fmtInt(s.reqPerSecMax)}`,
    fmtInt(s.rowsPerSec),
    fmtMs(s.p50),
    fmtMs(s.p90),
    fmtMs(s.p99),
    fmtMs(s.max),
    String(s.errors + s.non2xx + s.timeouts),
    fmtCores(s.serverCores),
    Number.isFinite(s.serverEventLoop) ? `${(s.serverEventLoop * 100).toFixed(0)} %` : '—',
    fmtMs(s.serverLoopMaxDelayMs),
    Number.isFinite(s.rowsPerRun) ? s.rowsPerRun.toFixed(1) : '—',
    fmtCores(s.generatorCores),
    fmtCores(s.machineCores),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}
