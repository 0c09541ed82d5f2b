/**
 * The request and response types of the HTTP API, read from the zod schemas the server validates with
 * (src/contracts at the repository root): a request type is what the schema accepts (`z.input`), a response type
 * what it produces (`z.output`), so this client cannot drift from the server. The build (scripts/build.ts)
 * replaces this file with the expansion of each type into plain TypeScript, so the published .d.ts needs no zod.
 */
import type * as C from '../../../src/contracts/index.js';

type In<Schema extends { _zod: { input: unknown } }> = Schema['_zod']['input'];
type Out<Schema extends { _zod: { output: unknown } }> = Schema['_zod']['output'];

// Requests
export type CreateJobRequest = In<typeof C.CreateJobRequest>;
export type ChatMessage = In<typeof C.ChatMessage>;
export type LlmCallRequest = In<typeof C.LlmCallRequest>;
export type CompleteJobRequest = In<typeof C.CompleteJobRequest>;
export type CreateAndCallRequest = In<typeof C.CreateAndCallRequest>;
export type QueueSubmitRequest = In<typeof C.QueueSubmitRequest>;
export type UsageQuery = In<typeof C.UsageQuery>;
/** `limit` (1-200, default 50) and the previous page's `next_cursor`. */
export type PageQuery = Partial<Out<typeof C.PageQuery>>;
export type CreateOrganizationRequest = In<typeof C.CreateOrganizationRequest>;
export type CreateModelGroupRequest = In<typeof C.CreateModelGroupRequest>;
export type UpdateModelGroupRequest = In<typeof C.UpdateModelGroupRequest>;
export type CreateTeamRequest = In<typeof C.CreateTeamRequest>;
export type CreateApiKeyRequest = In<typeof C.CreateApiKeyRequest>;
export type AddCreditsRequest = In<typeof C.AddCreditsRequest>;
export type SetBudgetModeRequest = In<typeof C.SetBudgetModeRequest>;
export type SetModelPriceRequest = In<typeof C.SetModelPriceRequest>;
export type CreateAdminUserRequest = In<typeof C.CreateAdminUserRequest>;
export type LoginRequest = In<typeof C.LoginRequest>;
export type UpdateTeamRequest = In<typeof C.UpdateTeamRequest>;
export type UpdateApiKeyRequest = In<typeof C.UpdateApiKeyRequest>;
export type DeductCreditsRequest = In<typeof C.DeductCreditsRequest>;
export type UpdateJobMetadataRequest = In<typeof C.UpdateJobMetadataRequest>;
/** Filters, sort (`sort`, `order`) and page (`limit`, `cursor`) of a team list. */
export type TeamListQuery = Partial<Out<typeof C.TeamListQuery>>;
export type OrganizationTeamsQuery = Partial<Out<typeof C.OrganizationTeamsQuery>>;
export type JobListQuery = Partial<Out<typeof C.JobListQuery>>;
export type TeamJobsQuery = Partial<Out<typeof C.TeamJobsQuery>>;
export type LedgerQuery = Partial<Out<typeof C.LedgerQuery>>;
export type LedgerExportQuery = Partial<Out<typeof C.LedgerExportQuery>>;
export type BalanceHistoryQuery = Partial<Out<typeof C.BalanceHistoryQuery>>;
export type OverviewQuery = Partial<Out<typeof C.OverviewQuery>>;
export type TimeSeriesQuery = Partial<Out<typeof C.TimeSeriesQuery>>;
export type BreakdownQuery = Partial<Out<typeof C.BreakdownQuery>>;
export type LowCreditsQuery = Partial<Out<typeof C.LowCreditsQuery>>;
export type CreateWebhookEndpointRequest = In<typeof C.CreateWebhookEndpointRequest>;
/** Without `rotate_secret`: `webhooks.rotateEndpointSecret` asks for that, and answers the new secret. */
export type UpdateWebhookEndpointRequest = Omit<In<typeof C.UpdateWebhookEndpointRequest>, 'rotate_secret'>;
/** `status`, and the page (`limit`, the previous page's `next_cursor` as `cursor`). */
export type WebhookDeliveriesQuery = Partial<Out<typeof C.WebhookDeliveriesQuery>>;

// Responses
export type ErrorBody = Out<typeof C.ErrorBody>;
export type JobStatus = Out<typeof C.JobStatus>;
export type BudgetMode = Out<typeof C.BudgetMode>;
export type CreateJobResponse = Out<typeof C.CreateJobResponse>;
export type LlmCallSummary = Out<typeof C.LlmCallSummary>;
export type JobCosts = Out<typeof C.JobCosts>;
export type Job = Out<typeof C.Job>;
export type CompleteJobResponse = Out<typeof C.CompleteJobResponse>;
export type ChatCompletion = Out<typeof C.ChatCompletion>;
export type LlmCallResponse = Out<typeof C.LlmCallResponse>;
export type CreateAndCallResponse = Out<typeof C.CreateAndCallResponse>;
export type QueueSubmitResponse = Out<typeof C.QueueSubmitResponse>;
export type QueueItem = Out<typeof C.QueueItem>;
export type CreditBalance = Out<typeof C.CreditBalance>;
export type CreditTransaction = Out<typeof C.CreditTransaction>;
export type AddCreditsResponse = Out<typeof C.AddCreditsResponse>;
export type Usage = Out<typeof C.Usage>;
export type ModelPrice = Out<typeof C.ModelPrice>;
export type ModelList = Out<typeof C.ModelList>;
export type Organization = Out<typeof C.Organization>;
export type ModelGroup = Out<typeof C.ModelGroup>;
export type Team = Out<typeof C.Team>;
export type CreateTeamResponse = Out<typeof C.CreateTeamResponse>;
export type ApiKey = Out<typeof C.ApiKey>;
export type CreatedApiKey = Out<typeof C.CreatedApiKey>;
export type AdminUser = Out<typeof C.AdminUser>;
export type AdminIdentity = Out<typeof C.AdminIdentity>;
export type LoginResponse = Out<typeof C.LoginResponse>;
export type TeamStatus = Out<typeof C.TeamStatus>;
export type TeamSummary = Out<typeof C.TeamSummary>;
export type JobSummary = Out<typeof C.JobSummary>;
export type DeductCreditsResponse = Out<typeof C.DeductCreditsResponse>;
export type BalanceHistory = Out<typeof C.BalanceHistory>;
export type AdminSetupStatus = Out<typeof C.AdminSetupStatus>;
export type ReportTotals = Out<typeof C.ReportTotals>;
export type WindowTotals = Out<typeof C.WindowTotals>;
export type Overview = Out<typeof C.Overview>;
export type TimeSeries = Out<typeof C.TimeSeries>;
export type Breakdown = Out<typeof C.Breakdown>;
export type LowCreditTeams = Out<typeof C.LowCreditTeams>;
export type WebhookEventType = Out<typeof C.WebhookEventType>;
export type WebhookEndpoint = Out<typeof C.WebhookEndpoint>;
export type WebhookEndpointWithSecret = Out<typeof C.WebhookEndpointWithSecret>;
export type WebhookDelivery = Out<typeof C.WebhookDelivery>;
/** A cursor-paged list without its items: pass `next_cursor` as `cursor` to get the next page. */
export type PageInfo = Omit<Out<ReturnType<typeof C.page>>, 'data'>;
