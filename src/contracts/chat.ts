import { z } from 'zod';

const ContentPart = z.looseObject({ type: z.string() });

export const ChatMessage = z
  .looseObject({
    role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
    content: z.union([z.string(), z.array(ContentPart), z.null()]).optional(),
    name: z.string().max(256).optional(),
    tool_calls: z.array(z.looseObject({ id: z.string(), type: z.string() })).optional(),
    tool_call_id: z.string().optional(),
  })
  .meta({ id: 'ChatMessage' });
export type ChatMessage = z.infer<typeof ChatMessage>;

/**
 * The OpenAI chat parameters creditgate checks; any other OpenAI parameter is passed to the upstream as is,
 * so new provider features work without a creditgate release.
 */
export const ChatParams = {
  messages: z.array(ChatMessage).min(1).max(2000),
  model: z.string().min(1).max(256).optional().meta({ description: "a model group or model alias; omitted: the team's default group" }),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().min(0).max(1).optional(),
  max_tokens: z.number().int().min(1).optional(),
  max_completion_tokens: z.number().int().min(1).optional(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).nullable().optional(),
  tools: z.array(z.looseObject({ type: z.string() })).max(128).optional(),
  tool_choice: z.union([z.string(), z.looseObject({ type: z.string() })]).optional(),
  response_format: z.looseObject({ type: z.string() }).optional(),
  n: z.literal(1).optional().meta({ description: 'only one choice per call is supported' }),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullable().optional(),
};

export const LlmCallRequest = z.looseObject({ ...ChatParams }).meta({ id: 'LlmCallRequest', example: { model: 'fast', messages: [{ role: 'user', content: 'Draft a friendly reply' }], max_tokens: 200 } });
export type LlmCallRequest = z.infer<typeof LlmCallRequest>;

/** An OpenAI `chat.completion` object as the upstream returned it. */
export const ChatCompletion = z
  .looseObject({
    id: z.string(),
    object: z.literal('chat.completion'),
    created: z.number(),
    model: z.string(),
    choices: z.array(z.looseObject({ index: z.number(), message: z.looseObject({ role: z.string() }), finish_reason: z.string().nullable() })),
    usage: z.looseObject({ prompt_tokens: z.number(), completion_tokens: z.number(), total_tokens: z.number() }).optional(),
  })
  .meta({ id: 'ChatCompletion' });

/** `POST /v1/chat/completions`: OpenAI's request, `model` required as in OpenAI's API. */
export const ChatCompletionRequest = z
  .looseObject({
    ...ChatParams,
    model: z.string().min(1).max(256).meta({ description: 'a model group or model alias of the team' }),
    stream: z.boolean().optional(),
  })
  .meta({ id: 'ChatCompletionRequest', example: { model: 'fast', messages: [{ role: 'user', content: 'Hi' }], stream: false } });
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequest>;

export const ModelList = z
  .object({
    object: z.literal('list'),
    data: z.array(z.object({ id: z.string(), object: z.literal('model'), created: z.number(), owned_by: z.string() })),
  })
  .meta({ id: 'ModelList' });
export type ModelList = z.infer<typeof ModelList>;
