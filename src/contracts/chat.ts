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
 * The OpenAI chat parameters creditgate forwards upstream: an allow-list. Anything else in a request is refused
 * (400 `unknown_parameter` naming it): a LiteLLM upstream reads fields such as `api_base`, `api_key`,
 * `user_config` or `fallbacks` as per-request overrides, and creditgate calls it with the operator's key; others
 * (`service_tier`, `web_search_options`, audio output) change what a call costs beyond the price table.
 */
export const ChatParams = {
  messages: z.array(ChatMessage).min(1).max(2000),
  model: z.string().min(1).max(256).optional().meta({ description: "a model group or model alias; omitted: the team's default group" }),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().min(0).max(1).optional(),
  max_tokens: z
    .number()
    .int()
    .min(1)
    .optional()
    .meta({ description: "completion limit; lowered to what the team's credits (or its job's caps) cover, and DEFAULT_MAX_TOKENS when omitted" }),
  max_completion_tokens: z.number().int().min(1).optional().meta({ description: 'same as max_tokens (OpenAI’s newer name); sent upstream in the field given' }),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).nullable().optional(),
  tools: z.array(z.looseObject({ type: z.string() })).max(128).optional(),
  tool_choice: z.union([z.string(), z.looseObject({ type: z.string() })]).optional(),
  parallel_tool_calls: z.boolean().optional(),
  functions: z.array(z.looseObject({ name: z.string() })).max(128).optional().meta({ deprecated: true }),
  function_call: z.union([z.string(), z.looseObject({ name: z.string() })]).optional().meta({ deprecated: true }),
  response_format: z.looseObject({ type: z.string() }).optional(),
  seed: z.number().int().optional(),
  presence_penalty: z.number().min(-2).max(2).optional(),
  frequency_penalty: z.number().min(-2).max(2).optional(),
  logit_bias: z.record(z.string(), z.number().min(-100).max(100)).optional(),
  logprobs: z.boolean().optional(),
  top_logprobs: z.number().int().min(0).max(20).optional(),
  n: z.literal(1).optional().meta({ description: 'only one choice per call is supported' }),
  user: z.string().max(256).optional(),
  reasoning_effort: z.enum(['minimal', 'low', 'medium', 'high']).optional(),
  metadata: z
    .record(z.string().max(64), z.string().max(512))
    .refine((metadata) => Object.keys(metadata).length <= 16, 'at most 16 keys')
    .optional()
    .meta({ description: "OpenAI's request metadata: up to 16 string values" }),
  stream_options: z.strictObject({ include_usage: z.boolean().optional() }).nullable().optional(),
};

export const LlmCallRequest = z
  .strictObject({ ...ChatParams })
  .meta({ id: 'LlmCallRequest', example: { model: 'fast', messages: [{ role: 'user', content: 'Draft a friendly reply' }], max_tokens: 200 } });
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
  .strictObject({
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
