"""The JSON objects of creditgate's HTTP API as TypedDicts, named and shaped like the server's contracts
(the components of its OpenAPI document, GET /openapi.json; the tests check them against it)."""


from typing import Any, Generic, Literal, NotRequired, TypedDict, TypeVar

JobStatus = Literal["pending", "in_progress", "completed", "failed", "cancelled", "expired"]
BudgetMode = Literal["job_based", "consumption_tokens", "consumption_usd"]
QueueStatus = Literal["queued", "processing", "completed", "error", "cancelled"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]
TeamStatus = Literal["active", "suspended", "archived"]
TransactionType = Literal["grant", "adjustment", "hold", "release", "charge", "refund"]
SortOrder = Literal["asc", "desc"]
TeamSort = Literal["team_id", "created_at", "balance", "credits_remaining", "last_activity_at"]
Granularity = Literal["hour", "day"]
BreakdownBy = Literal["team", "model", "job_type"]
BreakdownSort = Literal["credits_charged", "cost_usd", "margin_usd", "calls", "total_tokens", "error_rate"]
DeliveryStatus = Literal["pending", "delivered", "failed"]
WebhookEventType = Literal[
    "credits.added",
    "credits.low",
    "credits.depleted",
    "credits.refill_requested",
    "credits.refill_failed",
    "credits.refunded",
    "job.settled",
    "team.suspended",
    "team.resumed",
    "key.created",
    "key.revoked",
]

Item = TypeVar("Item")


class Page(TypedDict, Generic[Item]):
    """One page of a cursor-paged list: pass `next_cursor` as `cursor` for the next."""

    data: list[Item]
    has_more: bool
    next_cursor: str | None


# "from" is a Python keyword, hence the functional form; the models with a time range extend it.
TimeRange = TypedDict("TimeRange", {"from": str, "to": str})


class ChatMessage(TypedDict, total=False):
    role: str
    content: str | list[dict[str, Any]] | None
    name: str
    tool_calls: list[dict[str, Any]]
    tool_call_id: str


class ErrorDetail(TypedDict):
    type: str
    code: str
    message: str
    param: str | None
    request_id: NotRequired[str]


class ErrorBody(TypedDict):
    error: ErrorDetail


class CreateJobResponse(TypedDict):
    job_id: str
    status: Literal["pending"]
    created_at: str
    credits_reserved: float


class LlmCall(TypedDict):
    call_id: str
    status: Literal["in_progress", "success", "failed", "cancelled"]
    streamed: bool
    model_requested: str
    model_used: str | None
    response_content: str | None
    tool_calls: list[Any] | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    usage_source: Literal["upstream", "estimated", "reserved"] | None
    cost_usd: float
    latency_ms: int | None
    ttft_ms: int | None
    error: str | None
    created_at: str
    completed_at: str | None
    delivered: NotRequired[bool]
    max_tokens: NotRequired[int | None]


class JobCosts(TypedDict):
    total_calls: int
    successful_calls: int
    failed_calls: int
    total_tokens: int
    total_cost_usd: float
    credits_charged: float
    credit_applied: bool
    credits_remaining: float


class Job(TypedDict):
    job_id: str
    team_id: str
    job_type: str
    user_id: str | None
    status: JobStatus
    metadata: dict[str, Any]
    error_message: str | None
    credits_reserved: float
    created_at: str
    updated_at: str
    completed_at: str | None
    costs: JobCosts
    calls: list[LlmCall]


class CompleteJobResponse(TypedDict):
    job_id: str
    status: JobStatus
    completed_at: str
    costs: JobCosts
    calls: list[LlmCall]


class CompletedJob(CompleteJobResponse, JobCosts):
    """A settled job: the server's answer with every field of `costs` also at the top level."""


class LlmCallMetadata(TypedDict):
    job_id: str
    model_requested: str
    model_used: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    max_tokens: int
    """The completion limit the call was sent with."""
    latency_ms: int


class LlmCallResponse(TypedDict):
    call_id: str
    response: dict[str, Any]
    """An OpenAI chat.completion object."""
    metadata: LlmCallMetadata


class CreateAndCallResponse(LlmCallResponse):
    job_id: str
    status: JobStatus
    costs: JobCosts


class CreateAndCallResult(CreateAndCallResponse, JobCosts):
    """A one-shot call's answer with every field of `costs` also at the top level."""


class QueueSubmitted(TypedDict):
    queueId: str
    status: QueueStatus


class QueueResult(TypedDict):
    content: str | None
    finishReason: str | None
    toolCalls: list[Any] | None
    totalTokens: int


class QueueItem(TypedDict):
    queueId: str
    status: QueueStatus
    model: str
    jobId: str
    callId: str | None
    error: str | None
    createdAt: str
    startedAt: str | None
    finishedAt: str | None
    result: QueueResult | None


class QueueEvent(TypedDict):
    """One event of a queued call's stream: `start`, `chunk`, `error` or `done`, with its JSON data."""

    event: Literal["start", "chunk", "error", "done"]
    data: dict[str, Any]


class CreditBalance(TypedDict):
    team_id: str
    balance: float
    held: float
    credits_remaining: float
    credits_allocated: float
    credits_used: float
    budget_mode: BudgetMode
    credits_per_job: int
    tokens_per_credit: int | None
    credits_per_dollar: str | None
    updated_at: str
    waive_failed_jobs: NotRequired[bool]
    max_calls_per_job: NotRequired[int]
    max_tokens_per_job: NotRequired[int]
    credits_owed: NotRequired[float]


class CreditTransaction(TypedDict):
    transaction_id: str
    team_id: str
    type: TransactionType
    amount: float
    held_change: float
    balance_after: float
    held_after: float
    job_id: str | None
    reason: str | None
    actor: str
    created_at: str


# One page of the ledger, newest first.
TransactionPage = Page[CreditTransaction]


class AddCreditsResponse(TypedDict):
    transaction: CreditTransaction
    balance: CreditBalance


# The same shape: the ledger entry (an `adjustment`) and the new balance.
DeductCreditsResponse = AddCreditsResponse


class BalancePoint(TypedDict):
    day: str
    """The day (UTC)."""
    balance: float
    held: float
    credits_in: float
    credits_out: float


class BalanceHistory(TimeRange):
    """The team's balance and held credits at the end of each day of the range."""

    team_id: str
    points: list[BalancePoint]


class UsageTotals(TypedDict):
    jobs: int
    calls: int
    total_tokens: int
    cost_usd: float
    credits_charged: float


class UsageByJobType(UsageTotals):
    job_type: str


class UsageByTeam(UsageTotals):
    team_id: str


class UsageByModel(TypedDict):
    calls: int
    total_tokens: int
    cost_usd: float
    model: str


# "from" is a Python keyword, hence the functional form.
Usage = TypedDict(
    "Usage",
    {
        "from": str,
        "to": str,
        "totals": UsageTotals,
        "by_job_type": list[UsageByJobType],
        "by_model": list[UsageByModel],
        "by_team": NotRequired[list[UsageByTeam]],
    },
)


class Organization(TypedDict):
    organization_id: str
    name: str
    metadata: dict[str, Any]
    team_count: int
    created_at: str
    updated_at: str


OrganizationPage = Page[Organization]


class GroupModel(TypedDict):
    model_name: str
    priority: int


class ModelGroup(TypedDict):
    group_name: str
    display_name: str | None
    description: str | None
    models: list[GroupModel]
    created_at: str
    updated_at: str
    unpriced_models: NotRequired[list[str]]


class TeamCredits(TypedDict):
    balance: float
    held: float
    credits_remaining: float


class Limits(TypedDict):
    """A team's or a key's limits; None: no limit. Over a limit a request gets 429 with Retry-After."""

    requests_per_minute: int | None
    tokens_per_minute: int | None
    max_concurrent_jobs: int | None
    max_concurrent_calls: int | None


class AutoRefill(TypedDict):
    below_credits: int
    refill_credits: int


class BalanceAlerts(TypedDict):
    """When credits.low, credits.depleted and credits.refill_requested webhooks are sent; None: not set."""

    low_balance_credits: int | None
    low_balance_percent: int | None
    auto_refill: AutoRefill | None


class Team(TypedDict):
    team_id: str
    organization_id: str
    team_alias: str | None
    status: TeamStatus
    model_groups: list[str]
    budget_mode: BudgetMode
    credits_per_job: int
    tokens_per_credit: int | None
    credits_per_dollar: str | None
    credits: TeamCredits
    limits: Limits
    balance_alerts: BalanceAlerts
    stripe_customer_id: str | None
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    waive_failed_jobs: NotRequired[bool]
    max_calls_per_job: NotRequired[int]
    max_tokens_per_job: NotRequired[int]


class ApiKey(TypedDict):
    key_id: str
    team_id: str
    name: str | None
    key_prefix: str
    status: Literal["active", "revoked", "expired"]
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None
    limits: Limits


class CreatedApiKey(ApiKey):
    virtual_key: str
    """The secret key, shown only in this answer."""


class CreateTeamResponse(Team):
    virtual_key: str
    """The team's first secret key, shown only in this answer."""
    key: ApiKey


class ModelPrice(TypedDict):
    model_name: str
    input_usd_per_million: str
    output_usd_per_million: str
    updated_at: str


class AdminUser(TypedDict):
    admin_user_id: str
    email: str
    created_at: str
    last_login_at: str | None


class AdminIdentity(TypedDict):
    kind: Literal["master_key", "admin_user"]
    admin_user: AdminUser | None


class LoginResponse(TypedDict):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class ToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: dict[str, str]
    """`name` and `arguments` (a JSON string)."""


class CompletionUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: NotRequired[dict[str, int] | None]
    completion_tokens_details: NotRequired[dict[str, int] | None]


class FunctionDelta(TypedDict, total=False):
    name: str
    arguments: str
    """A piece of the JSON arguments: the pieces of one call join into its arguments."""


class ToolCallDelta(TypedDict):
    index: int
    id: NotRequired[str]
    type: NotRequired[Literal["function"]]
    function: NotRequired[FunctionDelta]


class ChoiceDelta(TypedDict, total=False):
    role: Literal["developer", "system", "user", "assistant", "tool"]
    content: str | None
    refusal: str | None
    tool_calls: list[ToolCallDelta]
    function_call: FunctionDelta


class ChunkChoice(TypedDict):
    index: int
    delta: ChoiceDelta
    finish_reason: FinishReason | None
    logprobs: NotRequired[Any]


class ChatCompletionChunk(TypedDict):
    """An OpenAI `chat.completion.chunk` as the server relays it. The OpenAPI document has no schema for stream
    chunks (they are SSE frames): the tests check the chunks the server sends against this model."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: NotRequired[CompletionUsage | None]
    """Only with `stream_options={"include_usage": True}`: null on every chunk but the last one."""
    system_fingerprint: NotRequired[str | None]


class FinalCall(TypedDict):
    content: str
    tool_calls: list[ToolCall]
    finish_reason: str | None
    usage: NotRequired[CompletionUsage]
    """Only when asked for with `stream_options={"include_usage": True}`."""


class AdminSetupStatus(TypedDict):
    admin_users_exist: bool


class TeamSummary(TypedDict):
    """A team as lists show it: its balance, status, budget mode and last activity."""

    team_id: str
    organization_id: str
    team_alias: str | None
    status: TeamStatus
    budget_mode: BudgetMode
    balance: float
    held: float
    credits_remaining: float
    last_activity_at: str | None
    """When its latest job was created."""
    created_at: str


class JobSummary(TypedDict):
    """A job as lists show it: its totals, without its calls."""

    job_id: str
    team_id: str
    job_type: str
    user_id: str | None
    status: JobStatus
    metadata: dict[str, Any]
    error_message: str | None
    total_calls: int
    total_tokens: int
    total_cost_usd: float
    credits_reserved: float
    credits_charged: float
    created_at: str
    completed_at: str | None


class ReportTotals(TypedDict):
    """Usage, cost and margin of a report's row, point or window. None: nothing to compute it from."""

    jobs: int
    calls: int
    failed_calls: int
    error_rate: float
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    credits_charged: float
    revenue_usd: float
    margin_usd: float
    margin_pct: float | None
    avg_latency_ms: float | None
    avg_ttft_ms: float | None


class LatencyPercentiles(TypedDict):
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None


class WindowTotals(ReportTotals, LatencyPercentiles, TimeRange):
    pass


class OverviewCredits(TypedDict):
    outstanding: float
    held: float
    available: float
    teams: int
    low_credit_teams: int
    low_credits_threshold: float


class OverviewWindows(TypedDict):
    today: WindowTotals
    last_7_days: WindowTotals
    last_30_days: WindowTotals


class Overview(TypedDict):
    generated_at: str
    credit_price_usd: str
    credits: OverviewCredits
    windows: OverviewWindows


class TimeSeriesPoint(ReportTotals, LatencyPercentiles):
    bucket: str
    """The hour or day the point covers."""


class TimeSeries(TimeRange):
    granularity: Granularity
    points: list[TimeSeriesPoint]


class BreakdownRow(ReportTotals):
    key: str
    """The team id, model or job type."""


class Breakdown(TimeRange):
    by: BreakdownBy
    rows: list[BreakdownRow]


class LowCreditTeam(TypedDict):
    team_id: str
    organization_id: str
    team_alias: str | None
    balance: float
    held: float
    credits_remaining: float


class LowCreditTeams(TypedDict):
    threshold: float
    data: list[LowCreditTeam]


class WebhookEndpoint(TypedDict):
    endpoint_id: str
    url: str
    events: list[str] | None
    """The event types sent to it; None: every type."""
    description: str | None
    enabled: bool
    created_at: str
    updated_at: str


class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: str
    """The Standard Webhooks signing secret (`whsec_...`), shown only in this answer."""


class WebhookDelivery(TypedDict):
    delivery_id: str
    endpoint_id: str
    event_id: str
    """The `webhook-id` header: the same for every attempt and replay of one event."""
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: str | None
    created_at: str


class WebhookDeliveryPage(TypedDict):
    """One page of deliveries, newest first: pass `next_cursor` as `cursor` for the next (None: the last page)."""

    data: list[WebhookDelivery]
    next_cursor: str | None


class CheckoutSession(TypedDict):
    session_id: str
    url: str | None
    """The hosted payment page."""
    credits: int


class CreditRefill(TypedDict):
    """An auto-refill: requested when the team's credits fell below its `auto_refill` line, then charged by Stripe."""

    refill_id: str
    team_id: str
    credits: int
    status: Literal["requested", "charging", "succeeded", "failed"]
    stripe_payment_intent_id: str | None
    error: str | None
    created_at: str
    updated_at: str
