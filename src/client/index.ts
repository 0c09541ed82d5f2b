export { CreditgateClient } from './client.js';
export { AdminClient, type AdminClientOptions } from './admin.js';
export type { ClientOptions, RequestOptions } from './core.js';
export { ChatStream, QueueStream } from './stream.js';
export {
  APIConnectionError,
  APITimeoutError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  CreditgateError,
  InsufficientCreditsError,
  InternalServerError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  UpstreamError,
} from './errors.js';
export type { ChatCompletionChunk, FinalCall, Input, List, Output, Page, QueueEvent, ToolCall } from './types.js';
export type * from '../contracts/index.js';
