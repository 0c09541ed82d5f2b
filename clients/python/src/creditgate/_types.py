"""The JSON objects of creditgate's HTTP API as TypedDicts, named and shaped like the server's contracts
(the components of its OpenAPI document, GET /openapi.json; the tests check them against it)."""


from typing import Any, Literal, NotRequired, TypedDict

JobStatus = Literal["pending", "in_progress", "completed", "failed", "cancelled", "expired"]
BudgetMode = Literal["job_based", "consumption_tokens", "consumption_usd"]
QueueStatus = Literal["queued", "processing", "completed", "error", "cancelled"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


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
    type: Literal["grant", "adjustment", "hold", "release", "charge", "refund"]
    amount: float
    held_change: float
    balance_after: float
    held_after: float
    job_id: str | None
    reason: str | None
    actor: str
    created_at: str


class TransactionPage(TypedDict):
    """One page of the ledger, newest first: pass `next_cursor` as `cursor` for the next."""

    data: list[CreditTransaction]
    has_more: bool
    next_cursor: str | None


class AddCreditsResponse(TypedDict):
    transaction: CreditTransaction
    balance: CreditBalance


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


class OrganizationPage(TypedDict):
    """One page of a cursor-paged list: pass `next_cursor` as `cursor` for the next."""

    data: list[Organization]
    has_more: bool
    next_cursor: str | None


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
    status: Literal["active", "suspended", "archived"]
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


class FinalCall(TypedDict):
    content: str
    tool_calls: list[ToolCall]
    finish_reason: str | None
    usage: NotRequired[dict[str, Any]]
    """Only when asked for with `stream_options={"include_usage": True}`."""
