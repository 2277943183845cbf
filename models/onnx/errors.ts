/**
 * Typed failures of the ONNX export. Both are caused by the model or its data, never by the environment: the
 * activities that call the exporter turn them into non-retryable failures (a retry would fail the same way).
 */
import { DomainError, type DomainErrorOptions } from '../../core/errors.js';

/** The model or transform cannot be expressed as the graph (inconsistent shapes, a non-finite weight, ...). */
export class OnnxExportError extends DomainError {
  override readonly name = 'OnnxExportError';
  constructor(message: string, options?: DomainErrorOptions) {
    super('integrity', message, options);
  }
}

/** onnxruntime's outputs for a sample differ from the trainer's own predictions by more than the tolerance. */
export class OnnxParityError extends DomainError {
  override readonly name = 'OnnxParityError';
  constructor(
    /** The largest absolute difference seen. */
    readonly maxAbsDiff: number,
    /** The row where it was seen. */
    readonly row: number,
    readonly tolerance: number,
    readonly output: string,
  ) {
    super(
      'integrity',
      `ONNX output ${output} differs from the expected values by ${maxAbsDiff} at row ${row} (tolerance ${tolerance})`,
    );
  }
}
