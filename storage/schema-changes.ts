import { acceptAnomalies } from '../data/schema.js';
import type { DatasetSchema, ValidationReport } from '../data/types.js';
import { ArtifactType } from '../schema/index.js';
import type { ArtifactStore } from './artifact-store.js';
import type { DatasetStore, SchemaVersionRecord } from './dataset-store.js';
import type { MetadataStore } from './metadata-store.js';
import { DomainError } from '../core/errors.js';

/** Thrown when a schema change cannot be accepted as asked (no schema yet, a report of another dataset, ...). */
export class SchemaChangeError extends DomainError {
  override readonly name = 'SchemaChangeError';
  constructor(message: string, kind: 'invalid' | 'not_found' | 'conflict') {
    super(kind, message);
  }
}

/**
 * Accepts the anomalies of a validation report as the dataset's new normal: widens the schema in force with
 * `acceptAnomalies`, stores it as a Schema artifact and records it as a new version with who accepted it and why
 * (the report is linked). This is the explicit, recorded action after a `DataValidation` failure; resuming the
 * run then validates against the new version. Refuses when the schema moved on since the report
 * (`basedOnVersion`), so two people cannot accept different changes over each other.
 */
export async function acceptSchemaChange(
  stores: { artifacts: ArtifactStore; metadata: MetadataStore; datasets: DatasetStore },
  request: { dataset: string; reportUri: string; actor: string; reason: string; basedOnVersion?: number },
): Promise<SchemaVersionRecord> {
  const current = await stores.datasets.currentSchema(request.dataset);
  if (!current) throw new SchemaChangeError(`dataset ${request.dataset} has no schema yet`, 'not_found');
  const reportArtifact = await stores.metadata.getArtifactByUri(request.reportUri);
  if (!reportArtifact || reportArtifact.type !== ArtifactType.Anomalies) {
    throw new SchemaChangeError(
      `${request.reportUri} is not a validation report known to the metadata store`,
      'not_found',
    );
  }
  if ((reportArtifact.properties as { dataset?: string }).dataset !== request.dataset) {
    throw new SchemaChangeError(`${request.reportUri} is a report of another dataset`, 'invalid');
  }
  const report = JSON.parse((await stores.artifacts.get(reportArtifact.uri)).toString('utf8')) as ValidationReport;
  if (report.ok) throw new SchemaChangeError('the report has no anomalies to accept', 'invalid');
  const schema = JSON.parse((await stores.artifacts.get(current.artifact.uri)).toString('utf8')) as DatasetSchema;
  const widened = acceptAnomalies(schema, report.anomalies);
  const ref = await stores.artifacts.put(`${JSON.stringify(widened, null, 1)}\n`, {
    kind: 'schema.json',
    contentType: 'application/json',
  });
  const artifact = await stores.metadata.putArtifact({
    type: ArtifactType.Schema,
    uri: ref.uri,
    sha256: ref.sha256,
    bytes: ref.bytes,
    contentType: ref.contentType,
    properties: { dataset: request.dataset, acceptedFrom: request.reportUri },
  });
  return stores.datasets.recordSchemaVersion({
    dataset: request.dataset,
    // The version the report was made against: accepting it over a schema changed since then is a conflict.
    basedOnVersion:
      request.basedOnVersion ??
      (reportArtifact.properties as { schemaVersion?: number }).schemaVersion ??
      current.version,
    artifactId: artifact.id,
    kind: 'accepted',
    actor: request.actor,
    reason: request.reason,
    reportArtifactId: reportArtifact.id,
  });
}
