import type {
  AddCreditsRequest,
  AdminSetupStatus,
  BalanceHistory,
  BalanceHistoryQuery,
  Breakdown,
  BreakdownQuery,
  DeductCreditsRequest,
  DeductCreditsResponse,
  Job,
  JobListQuery,
  JobSummary,
  CompleteJobResponse,
  LedgerExportQuery,
  LedgerQuery,
  LowCreditsQuery,
  LowCreditTeams,
  OrganizationTeamsQuery,
  Overview,
  OverviewQuery,
  TeamJobsQuery,
  TeamListQuery,
  TeamSummary,
  TimeSeries,
  TimeSeriesQuery,
  UpdateApiKeyRequest,
  UpdateJobMetadataRequest,
  UpdateTeamRequest,
  AddCreditsResponse,
  AdminIdentity,
  AdminUser,
  ApiKey,
  CreateAdminUserRequest,
  CreateApiKeyRequest,
  CreatedApiKey,
  CreateModelGroupRequest,
  CreateOrganizationRequest,
  CreateTeamRequest,
  CreateTeamResponse,
  CreditBalance,
  CreditTransaction,
  LoginRequest,
  LoginResponse,
  ModelGroup,
  ModelPrice,
  Organization,
  PageQuery,
  SetBudgetModeRequest,
  SetModelPriceRequest,
  Team,
  UpdateModelGroupRequest,
  Usage,
  UsageQuery,
  CreateWebhookEndpointRequest,
  UpdateWebhookEndpointRequest,
  WebhookDeliveriesQuery,
  WebhookDelivery,
  WebhookEndpoint,
  WebhookEndpointWithSecret,
} from './contracts.js';
import { ApiClient, segment, type ClientOptions, type RequestOptions } from './core.js';
import type { List, Page, WebhookDeliveryPage } from './types.js';

export type AdminClientOptions = Omit<ClientOptions, 'apiKey'> & {
  /** The MASTER_KEY or an admin JWT; may be omitted only to `adminUsers.login`. */
  apiKey?: string;
};

/** The admin API, grouped by resource as in openai-node: `admin.teams.create(...)`, `admin.credits.add(...)`. */
export class AdminClient extends ApiClient {
  constructor(options: AdminClientOptions) {
    super({ ...options, apiKey: options.apiKey ?? '' });
  }

  readonly organizations = {
    create: (body: CreateOrganizationRequest, options?: RequestOptions) =>
      this.request<Organization>({ method: 'POST', path: '/api/organizations/create', body }, options),
    list: (query: PageQuery = {}, options?: RequestOptions) =>
      this.request<Page<Organization>>({ method: 'GET', path: '/api/organizations', query }, options),
    get: (organizationId: string, options?: RequestOptions) =>
      this.request<Organization>({ method: 'GET', path: `/api/organizations/${segment(organizationId)}` }, options),
    usage: (organizationId: string, query: UsageQuery = {}, options?: RequestOptions) =>
      this.request<Usage>({ method: 'GET', path: `/api/organizations/${segment(organizationId)}/usage`, query }, options),
    teams: (organizationId: string, query: OrganizationTeamsQuery = {}, options?: RequestOptions) =>
      this.request<Page<TeamSummary>>({ method: 'GET', path: `/api/organizations/${segment(organizationId)}/teams`, query }, options),
  };

  readonly modelGroups = {
    create: (body: CreateModelGroupRequest, options?: RequestOptions) =>
      this.request<ModelGroup>({ method: 'POST', path: '/api/model-groups/create', body }, options),
    list: (options?: RequestOptions) => this.request<List<ModelGroup>>({ method: 'GET', path: '/api/model-groups' }, options),
    get: (groupName: string, options?: RequestOptions) =>
      this.request<ModelGroup>({ method: 'GET', path: `/api/model-groups/${segment(groupName)}` }, options),
    /** `models`, when given, replaces the whole list. */
    update: (groupName: string, body: UpdateModelGroupRequest, options?: RequestOptions) =>
      this.request<ModelGroup>({ method: 'PUT', path: `/api/model-groups/${segment(groupName)}`, body }, options),
    delete: (groupName: string, options?: RequestOptions) =>
      this.request<{ group_name: string; deleted: true }>({ method: 'DELETE', path: `/api/model-groups/${segment(groupName)}` }, options),
  };

  readonly teams = {
    /** The answer's `virtual_key` is shown only this once. */
    create: (body: CreateTeamRequest, options?: RequestOptions) =>
      this.request<CreateTeamResponse>({ method: 'POST', path: '/api/teams/create', body }, options),
    get: (teamId: string, options?: RequestOptions) => this.request<Team>({ method: 'GET', path: `/api/teams/${segment(teamId)}` }, options),
    /** Search, filter, sort and page: pass the previous page's `next_cursor` as `cursor`. Archived teams only with `status: 'archived'`. */
    list: (query: TeamListQuery = {}, options?: RequestOptions) => this.request<Page<TeamSummary>>({ method: 'GET', path: '/api/teams', query }, options),
    /** Omitted fields stay as they are; `model_groups` replaces the list (the first is the default). */
    update: (teamId: string, body: UpdateTeamRequest, options?: RequestOptions) =>
      this.request<Team>({ method: 'PATCH', path: `/api/teams/${segment(teamId)}`, body }, options),
    /** Archives the team (409 while it has open jobs or credits); its history is kept. */
    delete: (teamId: string, options?: RequestOptions) => this.request<Team>({ method: 'DELETE', path: `/api/teams/${segment(teamId)}` }, options),
    jobs: (teamId: string, query: TeamJobsQuery = {}, options?: RequestOptions) =>
      this.request<Page<JobSummary>>({ method: 'GET', path: `/api/teams/${segment(teamId)}/jobs`, query }, options),
    suspend: (teamId: string, options?: RequestOptions) =>
      this.request<Team>({ method: 'PUT', path: `/api/teams/${segment(teamId)}/suspend` }, options),
    resume: (teamId: string, options?: RequestOptions) =>
      this.request<Team>({ method: 'PUT', path: `/api/teams/${segment(teamId)}/resume` }, options),
    usage: (teamId: string, query: UsageQuery = {}, options?: RequestOptions) =>
      this.request<Usage>({ method: 'GET', path: `/api/teams/${segment(teamId)}/usage`, query }, options),
  };

  readonly keys = {
    /** The answer's `virtual_key` is shown only this once. */
    create: (teamId: string, body: CreateApiKeyRequest = {}, options?: RequestOptions) =>
      this.request<CreatedApiKey>({ method: 'POST', path: `/api/teams/${segment(teamId)}/keys`, body }, options),
    list: (teamId: string, options?: RequestOptions) =>
      this.request<List<ApiKey>>({ method: 'GET', path: `/api/teams/${segment(teamId)}/keys` }, options),
    update: (keyId: string, body: UpdateApiKeyRequest, options?: RequestOptions) =>
      this.request<ApiKey>({ method: 'PATCH', path: `/api/keys/${segment(keyId)}`, body }, options),
    revoke: (keyId: string, options?: RequestOptions) => this.request<ApiKey>({ method: 'DELETE', path: `/api/keys/${segment(keyId)}` }, options),
  };

  /** Every team's jobs, as an admin sees them. */
  readonly jobs = {
    list: (query: JobListQuery = {}, options?: RequestOptions) => this.request<Page<JobSummary>>({ method: 'GET', path: '/api/jobs', query }, options),
    /** The job with its calls, in order (content and tool calls included). */
    get: (jobId: string, options?: RequestOptions) => this.request<Job>({ method: 'GET', path: `/api/jobs/${segment(jobId)}` }, options),
    /** Aborts its calls in flight and ends it `cancelled`; it pays for what it delivered. */
    cancel: (jobId: string, options?: RequestOptions) =>
      this.request<CompleteJobResponse>({ method: 'POST', path: `/api/jobs/${segment(jobId)}/cancel` }, options),
    /** Merges keys into the job's metadata; a key set to null is removed. */
    updateMetadata: (jobId: string, body: UpdateJobMetadataRequest, options?: RequestOptions) =>
      this.request<Job>({ method: 'PATCH', path: `/api/jobs/${segment(jobId)}/metadata`, body }, options),
  };

  readonly credits = {
    balance: (teamId: string, options?: RequestOptions) =>
      this.request<CreditBalance>({ method: 'GET', path: `/api/credits/teams/${segment(teamId)}/balance` }, options),
    add: (teamId: string, body: AddCreditsRequest, options?: RequestOptions) =>
      this.request<AddCreditsResponse>({ method: 'POST', path: `/api/credits/teams/${segment(teamId)}/add`, body }, options),
    /** Never more than the team has available; pass one `idempotencyKey` per intended deduction. */
    deduct: (teamId: string, body: DeductCreditsRequest, options?: RequestOptions) =>
      this.request<DeductCreditsResponse>({ method: 'POST', path: `/api/credits/teams/${segment(teamId)}/deduct`, body }, options),
    /** The ledger as CSV text, oldest first. */
    exportCsv: (teamId: string, query: LedgerExportQuery = {}, options?: RequestOptions) =>
      this.requestText({ method: 'GET', path: `/api/credits/teams/${segment(teamId)}/transactions.csv`, query }, 'text/csv', options),
    balanceHistory: (teamId: string, query: BalanceHistoryQuery = {}, options?: RequestOptions) =>
      this.request<BalanceHistory>({ method: 'GET', path: `/api/credits/teams/${segment(teamId)}/balance-history`, query }, options),
    transactions: (teamId: string, query: LedgerQuery = {}, options?: RequestOptions) =>
      this.request<Page<CreditTransaction>>({ method: 'GET', path: `/api/credits/teams/${segment(teamId)}/transactions`, query }, options),
    setBudgetMode: (teamId: string, body: SetBudgetModeRequest, options?: RequestOptions) =>
      this.request<CreditBalance>({ method: 'PATCH', path: `/api/credits/teams/${segment(teamId)}/budget-mode`, body }, options),
  };

  readonly modelPrices = {
    list: (options?: RequestOptions) => this.request<List<ModelPrice>>({ method: 'GET', path: '/api/model-prices' }, options),
    set: (modelName: string, body: SetModelPriceRequest, options?: RequestOptions) =>
      this.request<ModelPrice>({ method: 'PUT', path: `/api/model-prices/${segment(modelName)}`, body }, options),
  };

  readonly adminUsers = {
    create: (body: CreateAdminUserRequest, options?: RequestOptions) =>
      this.request<AdminUser>({ method: 'POST', path: '/api/admin-users/create', body }, options),
    /** The `access_token` works as the `apiKey` of another AdminClient. */
    login: (body: LoginRequest, options?: RequestOptions) =>
      this.request<LoginResponse>({ method: 'POST', path: '/api/admin-users/login', body }, options),
    me: (options?: RequestOptions) => this.request<AdminIdentity>({ method: 'GET', path: '/api/admin-users/me' }, options),
    /** Needs no credential: whether the first admin user was created yet. */
    exists: (options?: RequestOptions) => this.request<AdminSetupStatus>({ method: 'GET', path: '/api/admin-users/exists' }, options),
  };

  /** Summaries, time series and breakdowns of usage, cost and margin (the console's overview). */
  readonly reports = {
    overview: (query: OverviewQuery = {}, options?: RequestOptions) => this.request<Overview>({ method: 'GET', path: '/api/reports/overview', query }, options),
    timeseries: (query: TimeSeriesQuery = {}, options?: RequestOptions) =>
      this.request<TimeSeries>({ method: 'GET', path: '/api/reports/timeseries', query }, options),
    breakdown: (query: BreakdownQuery = {}, options?: RequestOptions) =>
      this.request<Breakdown>({ method: 'GET', path: '/api/reports/breakdown', query }, options),
    lowCredits: (query: LowCreditsQuery = {}, options?: RequestOptions) =>
      this.request<LowCreditTeams>({ method: 'GET', path: '/api/reports/low-credits', query }, options),
  };

  /** Outgoing webhooks: the endpoints events are POSTed to, and each delivery of an event to one of them. */
  readonly webhooks = {
    /** The answer's `secret` (the Standard Webhooks signing secret) is shown only this once. */
    createEndpoint: (body: CreateWebhookEndpointRequest, options?: RequestOptions) =>
      this.request<WebhookEndpointWithSecret>({ method: 'POST', path: '/api/webhooks/endpoints', body }, options),
    /** Every endpoint, never with its secret. */
    listEndpoints: (options?: RequestOptions) => this.request<List<WebhookEndpoint>>({ method: 'GET', path: '/api/webhooks/endpoints' }, options),
    /** Omitted fields stay as they are; `events: null` sends every type. */
    updateEndpoint: (endpointId: string, body: UpdateWebhookEndpointRequest, options?: RequestOptions) =>
      this.request<WebhookEndpoint>({ method: 'PATCH', path: `/api/webhooks/endpoints/${segment(endpointId)}`, body }, options),
    /** A new signing secret, shown only in this answer; the old one stops signing at once. */
    rotateEndpointSecret: (endpointId: string, options?: RequestOptions) =>
      this.request<WebhookEndpointWithSecret>({ method: 'PATCH', path: `/api/webhooks/endpoints/${segment(endpointId)}`, body: { rotate_secret: true } }, options),
    /** Deletes the endpoint and its deliveries. */
    deleteEndpoint: (endpointId: string, options?: RequestOptions) =>
      this.request<{ endpoint_id: string; deleted: true }>({ method: 'DELETE', path: `/api/webhooks/endpoints/${segment(endpointId)}` }, options),
    /** Newest first: pass the previous page's `next_cursor` as `cursor`. */
    listDeliveries: (endpointId: string, query: WebhookDeliveriesQuery = {}, options?: RequestOptions) =>
      this.request<WebhookDeliveryPage>({ method: 'GET', path: `/api/webhooks/endpoints/${segment(endpointId)}/deliveries`, query }, options),
    /** Sends the delivery's event to its endpoint again (same `webhook-id`); answers the new delivery. */
    replayDelivery: (deliveryId: string, options?: RequestOptions) =>
      this.request<WebhookDelivery>({ method: 'POST', path: `/api/webhooks/deliveries/${segment(deliveryId)}/replay` }, options),
  };
}
