/**
 * The ONNX export of trained models: one graph from raw features to prediction (export.ts), and running it with
 * onnxruntime (runtime.ts). Serving imports this module; trainers' activities call {@link exportOnnx} then
 * {@link verifyOnnx}.
 */
export { OnnxExportError, OnnxParityError } from './errors.js';
export {
  exportOnnx,
  onnxSignature,
  ONNX_FORMAT_VERSION,
  ONNX_IR_VERSION,
  ONNX_METADATA,
  ONNX_ML_OPSET,
  ONNX_OPSET,
  OUTPUT_LABEL,
  OUTPUT_PREDICTION,
  OUTPUT_PROBABILITIES,
  type OnnxExport,
  type OnnxExportOptions,
} from './export.js';
export {
  columnsToOnnxFeeds,
  sessionSignature,
  toOnnxFeeds,
  verifyOnnx,
  type OnnxParity,
  type VerifyOnnxOptions,
} from './runtime.js';
