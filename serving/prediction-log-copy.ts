/**
 * The prediction log's rows in Postgres COPY text format, as the sink in prediction-log-postgres.ts streams them into
 * `prediction_logs`. Pure: no connection, no I/O.
 */
import type { PredictionLogRow } from './prediction-log-records.js';

/**
 * The columns in the order the COPY text gives them: the ones a model's rows share first, so that their text is made
 * once per run of rows from the same model version.
 */
export const COPY_ROWS = `copy prediction_logs (deployment, model, version_id, version, role, request_id, logged_at, latency_ms, error,
  features, outputs) from stdin`;

/**
 * The rows in COPY's text format (tab-separated fields in {@link COPY_ROWS}' order, `\N` for null, backslash
 * escapes). Per row, only what varies is formatted: the model's fields are reused while they repeat, and the
 * timestamp while it stays in the same second.
 */
export function copyText(rows: readonly PredictionLogRow[]): string {
  let text = '';
  let shared = '';
  let sharedOf: PredictionLogRow | undefined;
  const time = new TimestampText();
  for (const row of rows) {
    if (
      sharedOf === undefined ||
      row.versionId !== sharedOf.versionId ||
      row.deployment !== sharedOf.deployment ||
      row.model !== sharedOf.model ||
      row.version !== sharedOf.version ||
      row.role !== sharedOf.role
    ) {
      sharedOf = row;
      shared = `${nullableField(row.deployment)}\t${copyField(row.model)}\t${copyField(row.versionId)}\t${row.version}\t${copyField(row.role)}\t`;
    }
    text +=
      shared +
      copyField(row.requestId) +
      '\t' +
      time.of(row.loggedAt) +
      '\t' +
      String(row.latencyMs) +
      '\t' +
      nullableField(row.error) +
      '\t' +
      jsonField(row.features) +
      '\t' +
      (row.outputs === null ? NULL_FIELD : jsonField(row.outputs)) +
      '\n';
  }
  return text;
}

/** ISO 8601 text of ms timestamps, formatting the date and time once per second. */
class TimestampText {
  #second = Number.NaN;
  #prefix = '';

  of(ms: number): string {
    const second = Math.floor(ms / 1000);
    if (second !== this.#second) {
      this.#second = second;
      this.#prefix = new Date(second * 1000).toISOString().slice(0, 20);
    }
    const fraction = ms - second * 1000;
    return Number.isInteger(fraction)
      ? `${this.#prefix}${fraction < 10 ? '00' : fraction < 100 ? '0' : ''}${fraction}Z`
      : new Date(ms).toISOString();
  }
}

const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_SPECIAL_ALL = /[\\\t\n\r]/g;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** A text value as a COPY text field. */
function copyField(value: string): string {
  return COPY_SPECIAL.test(value) ? value.replace(COPY_SPECIAL_ALL, (c) => COPY_ESCAPES[c]!) : value;
}

/** COPY's text format for null. */
const NULL_FIELD = '\\N';

function nullableField(value: string | null): string {
  return value === null ? NULL_FIELD : copyField(value);
}

/** JSON text as a COPY text field: JSON text has no raw tabs or line breaks, only its own backslash escapes. */
function jsonField(json: string): string {
  return json.includes('\\') ? json.replaceAll('\\', '\\\\') : json;
}
