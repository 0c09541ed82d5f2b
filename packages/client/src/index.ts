export { CreditgateClient, type JobHandle, type JobOptions } from './client.js';
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
export type * from './types.js';
export type * from './contracts.js';
