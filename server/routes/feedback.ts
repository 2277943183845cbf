/**
 * `POST /v1/feedback`: ground truth for logged predictions, by request id (one label, or a batch of up to 10,000).
 * The rules are monitoring/feedback.ts's; this file is the HTTP contract.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import {
  FEEDBACK_BATCH_LIMIT,
  FeedbackRecorder,
  onnxClassesReader,
  type FeedbackItem,
} from '../../monitoring/feedback.js';
import type { ArtifactStore } from '../../storage/artifact-store.js';
import type { FeedbackStore } from '../../storage/feedback-store.js';
import { actorOf, scoped } from '../auth.js';
import type { AppEnv } from '../context.js';
import { createRouter } from '../router.js';
import { errorResponse, jsonResponse } from './common.js';

export interface FeedbackDeps {
  readonly feedback: FeedbackStore;
  /** Where the registered graphs are, to read a classifier's classes (once per version). */
  readonly artifacts: Pick<ArtifactStore, 'get'>;
}

/** The request ids the API gives (and accepts in `x-request-id`, see middleware/request-id.ts): no other is logged. */
const REQUEST_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** Longest class label taken (a class is a value of the training data's label column). */
const MAX_LABEL_LENGTH = 1000;

const requestIdSchema = z
  .string()
  .regex(REQUEST_ID_PATTERN, 'a request id: 1-128 letters, digits and ._:- (as the predict answer gave it)')
  .openapi({
    description: 'The `requestId` of the predict answer (also its `x-request-id` header).',
    example: '0b7c1f5e-7d1f-4a3e-9e0b-5d6f1c2a3b4c',
  });

const labelSchema = z
  .union([z.string().min(1).max(MAX_LABEL_LENGTH), z.number(), z.boolean()], {
    error: (issue) => (issue.code === 'invalid_union' ? 'a label is a string, a number or a boolean' : undefined),
  })
  .openapi({
    description:
      "The true outcome. Classification: one of the model's classes (as its predict answers list them), or its " +
      'text form (`"true"` for the class `true`); stored as the class itself. Regression: a number.',
    example: true,
  });

const itemSchema = z.object({ requestId: requestIdSchema, label: labelSchema }).strict().openapi('FeedbackItem');

const bodySchema = z
  .object({
    requestId: requestIdSchema.optional(),
    label: labelSchema.optional(),
    items: z
      .array(itemSchema)
      .min(1)
      .max(FEEDBACK_BATCH_LIMIT, `at most ${FEEDBACK_BATCH_LIMIT} labels per call`)
      .optional()
      .openapi({ description: `A batch: up to ${FEEDBACK_BATCH_LIMIT} labels, recorded all or nothing.` }),
  })
  .strict()
  .superRefine((body, ctx) => {
    const single = body.requestId !== undefined || body.label !== undefined;
    if (body.items !== undefined && single) {
      ctx.addIssue({ code: 'custom', path: ['items'], message: 'send either `requestId` and `label`, or `items`' });
    } else if (body.items === undefined) {
      if (body.requestId === undefined) {
        ctx.addIssue({ code: 'custom', path: ['requestId'], message: 'required (or send a batch as `items`)' });
      }
      if (body.label === undefined) {
        ctx.addIssue({ code: 'custom', path: ['label'], message: 'required (or send a batch as `items`)' });
      }
    }
  })
  .openapi('Feedback', {
    description: 'One label (`requestId` and `label`) or a batch (`items`).',
    example: { items: [{ requestId: '0b7c1f5e-7d1f-4a3e-9e0b-5d6f1c2a3b4c', label: true }] },
  });

const answerSchema = z
  .object({
    recorded: z.number().int().openapi({ description: 'Labels stored by this call.' }),
    alreadyRecorded: z
      .number()
      .int()
      .openapi({ description: 'Request ids that already had this same label: nothing changed for them.' }),
    unknown: z.array(z.string()).openapi({
      description:
        'Request ids with no logged prediction: not stored. Predictions are logged in the background, so one ' +
        'answered a moment ago may be listed here: send it again in a few seconds. One that stays unknown was not ' +
        'logged (sampled out, dropped, or never predicted).',
    }),
  })
  .openapi('FeedbackAnswer');

const recordFeedbackRoute = createRoute({
  method: 'post',
  path: '/',
  // Whoever may ask for predictions may report how they turned out.
  ...scoped('predict'),
  tags: ['monitoring'],
  summary: 'Record the true labels of logged predictions, by request id',
  description:
    `One label, or a batch of up to ${FEEDBACK_BATCH_LIMIT}, each for the \`requestId\` of a predict answer. ` +
    'Idempotent: a label already recorded for its request id is counted as `alreadyRecorded`. A label is checked ' +
    'against the model version that answered: one of its classes for a classifier, a number for a regressor. A ' +
    'request id with no logged prediction yet is returned in `unknown` and not stored: prediction logs are written ' +
    'in the background, so retry those ids a little later. Counts are of distinct request ids. A request of several ' +
    'instances gets one label for all of them. A call is recorded all or nothing.',
  request: { body: { content: { 'application/json': { schema: bodySchema } }, required: true } },
  responses: {
    200: jsonResponse('What was recorded, and the request ids not known (yet).', answerSchema),
    400: errorResponse(
      `A malformed body, more than ${FEEDBACK_BATCH_LIMIT} items, or a label of the wrong type or not among the ` +
        "model's classes (the field is named, e.g. `items[3].label`). Nothing was recorded.",
    ),
    409: errorResponse(
      'A request id already has another label, or is given two labels in this call (the field is named). Nothing ' +
        'was recorded.',
    ),
  },
});

export function feedback(deps: FeedbackDeps): OpenAPIHono<AppEnv> {
  const recorder = new FeedbackRecorder({ store: deps.feedback, classesOf: onnxClassesReader(deps.artifacts) });
  const router = createRouter();
  router.openapi(recordFeedbackRoute, async (c) => {
    const body = c.req.valid('json');
    const batch = body.items !== undefined;
    const items: FeedbackItem[] = body.items ?? [{ requestId: body.requestId!, label: body.label! }];
    const answer = await recorder.record(items, {
      actor: actorOf(c),
      fieldOf: (index) => (batch ? `items[${index}]` : ''),
    });
    c.get('logger')().info(
      { items: items.length, recorded: answer.recorded, unknown: answer.unknown.length },
      'feedback recorded',
    );
    return c.json({ ...answer, unknown: [...answer.unknown] }, 200);
  });
  return router;
}
