import fs from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { withFailureContract } from '../../activities/failure-contract.js';
import { toApplicationFailure } from '../../core/application-failure.js';
import { FailureType } from '../../core/constants.js';
import { DomainError } from '../../core/errors.js';
import { PrepareError } from '../../data/prepare.js';
import { ExtractError } from '../../data/extract-errors.js';
import { OnnxParityError } from '../../models/onnx/errors.js';
import { TrainingFailedError } from '../../models/run-training-thread.js';
import { TrainingParameterError } from '../../models/types.js';
import { RunNotFoundError, RunStateError } from '../../pipelines/runs.js';
import { SourceProbeError } from '../../pipelines/probe-source.js';
import { BatchScoringError } from '../../serving/batch-scorer.js';
import { BatcherOverloadedError } from '../../serving/batcher.js';
import { PredictRequestError } from '../../serving/signature.js';
import { ArtifactIntegrityError } from '../../storage/content-hash.js';
import { ObjectChangedError } from '../../storage/object-source.js';
import { RegistryConflictError } from '../../storage/registry-common.js';

const root = path.resolve(import.meta.dirname, '../..');

describe('the error contract', () => {
  it('gives every domain error its HTTP status, code, failure type and retryability from its kind', () => {
    const cases: [DomainError, number, string, string, boolean][] = [
      [new RunNotFoundError('run x does not exist'), 404, 'not_found', FailureType.NotFound, false],
      [new RunStateError('run x is not waiting'), 409, 'conflict', FailureType.InvalidInput, false],
      [new RegistryConflictError('v1 is not blessed'), 409, 'conflict', FailureType.InvalidInput, false],
      [new TrainingParameterError('C', 'must be > 0'), 400, 'invalid_request', FailureType.InvalidInput, false],
      [new PrepareError('unknown_column', 'no column x', 'x'), 400, 'unknown_column', FailureType.InvalidInput, false],
      [new PrepareError('label_null', 'null label', 'y'), 422, 'label_null', FailureType.DataValidation, false],
      [new ExtractError('empty_source', 's3://b/k', 'no rows'), 422, 'empty_source', FailureType.DataValidation, false],
      [new ExtractError('source_changed', 's3://b/k', 'moved'), 404, 'source_changed', FailureType.NotFound, true],
      [new ArtifactIntegrityError('s3://a', 'aa', 'bb', 3), 500, 'artifact_integrity', 'ArtifactIntegrity', false],
      [new OnnxParityError(1, 2, 1e-5, 'label'), 500, 'artifact_integrity', FailureType.ArtifactIntegrity, false],
      [new ObjectChangedError('s3://b/k', 'etag'), 404, 'not_found', FailureType.NotFound, true],
      [new SourceProbeError('S3 is down'), 503, 'service_unavailable', 'ServiceUnavailable', true],
      [new BatcherOverloadedError('9 rows wait'), 503, 'overloaded', 'ServiceUnavailable', true],
      [new PredictRequestError(413, 'too_many_instances', []), 413, 'too_many_instances', 'InvalidInput', false],
    ];
    for (const [error, httpStatus, code, failureType, retryable] of cases) {
      expect(error, error.name).toBeInstanceOf(DomainError);
      const contract = {
        httpStatus: error.httpStatus,
        code: error.code,
        failureType: error.failureType,
        retryable: error.retryable,
      };
      expect(contract, error.name).toEqual({ httpStatus, code, failureType, retryable });
    }
  });

  it('turns a final domain error into a non-retryable failure of its type, details merged over the context', () => {
    const failure = toApplicationFailure(new PrepareError('label_null', 'the label is null in 3 rows', 'delayed'), {
      stage: 'prepare',
    });
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({
      type: FailureType.DataValidation,
      message: 'the label is null in 3 rows',
      nonRetryable: true,
      details: [{ stage: 'prepare', code: 'label_null', field: 'delayed' }],
    });
    expect(toApplicationFailure(new BatchScoringError('not_found', 'no version 3'))).toMatchObject({
      type: FailureType.NotFound,
      nonRetryable: true,
    });
  });

  it('leaves retryable domain errors and every other error as they are, for Temporal to retry', () => {
    const changed = new ObjectChangedError('s3://b/k', 'etag');
    const dropped = new Error('connect ECONNREFUSED 127.0.0.1:5432');
    const thread = new TrainingFailedError('RangeError', 'Array buffer allocation failed');
    expect(toApplicationFailure(changed)).toBe(changed);
    expect(toApplicationFailure(dropped)).toBe(dropped);
    expect(toApplicationFailure(thread)).toBe(thread);
    expect(toApplicationFailure(new TrainingFailedError('TrainingParameterError', 'bad C', 'C'))).toMatchObject({
      type: FailureType.InvalidInput,
      nonRetryable: true,
      details: [{ parameter: 'C' }],
    });
  });

  it('ends any wrapped activity that meets a final domain error with its failure, and passes the rest through', async () => {
    const dropped = new Error('socket hang up');
    const activities = withFailureContract({
      refuse: async () => {
        throw new RunStateError('run r1 is not waiting for approval');
      },
      drop: async () => {
        throw dropped;
      },
      answer: async (n: number) => n + 1,
    });
    await expect(activities.refuse()).rejects.toMatchObject({
      type: FailureType.InvalidInput,
      nonRetryable: true,
      message: 'run r1 is not waiting for approval',
    });
    await expect(activities.drop()).rejects.toBe(dropped);
    expect(await activities.answer(1)).toBe(2);
  });

  it('has no error class outside the contract but the process-level and thread-internal ones', () => {
    // A new error that a request or a stage can meet extends DomainError; these end a process or stay in a thread.
    const outside = new Set([
      'ConfigError',
      'ServiceError',
      'AlreadyRunningError',
      'DownloadError',
      'DemoError',
      'Rejection',
      'TrainingCancelledError',
      'InferenceThreadError',
      'RemoteInferenceError',
    ]);
    const found: string[] = [];
    const walk = (dir: string) => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        if (['node_modules', 'test', 'bench', '.data', '.git'].includes(entry.name)) continue;
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(file);
        else if (entry.name.endsWith('.ts')) {
          for (const match of fs.readFileSync(file, 'utf8').matchAll(/class (\w+) extends Error\b/g)) {
            if (match[1] !== 'DomainError' && !outside.has(match[1]!)) found.push(`${match[1]} (${file})`);
          }
        }
      }
    };
    walk(root);
    expect(found).toEqual([]);
  });
});
