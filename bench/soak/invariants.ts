/** What the soak asserts: named checks, each passed or failed with what was seen. */

export interface Invariant {
  readonly name: string;
  readonly ok: boolean;
  /** What was seen, for the summary (and, when it failed, why). */
  readonly detail: string;
}

export function invariant(name: string, ok: boolean, detail: string): Invariant {
  return { name, ok, detail };
}

/** One line per invariant, PASS or FAIL first. */
export function formatInvariants(invariants: readonly Invariant[]): string {
  return invariants.map((i) => `  ${i.ok ? 'PASS' : 'FAIL'}  ${i.name}: ${i.detail}`).join('\n');
}
