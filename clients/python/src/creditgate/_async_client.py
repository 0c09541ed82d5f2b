"""The asyncio clients: AsyncClient (a team's virtual key) and AsyncAdminClient (the MASTER_KEY or an admin JWT).
The sync clients (_client.py) are generated from this file by scripts/generate_sync.py: change them here."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, AsyncIterator, Self, cast

import httpx

from ._base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    ApiRequest,
    body_of,
    error_of,
    is_retryable,
    parse_json,
    retry_delay,
    segment,
    transport_error,
)
from ._errors import ConflictError, CreditgateError
from ._async_streaming import AsyncChatStream, AsyncQueueStream
from ._types import (
    AddCreditsResponse,
    AdminIdentity,
    AdminSetupStatus,
    AdminUser,
    ApiKey,
    BalanceHistory,
    Breakdown,
    BreakdownBy,
    BreakdownSort,
    BudgetMode,
    ChatMessage,
    CheckoutSession,
    CompletedJob,
    CreateAndCallResult,
    CreatedApiKey,
    CreateJobResponse,
    CreateTeamResponse,
    CreditBalance,
    CreditRefill,
    DeductCreditsResponse,
    DeliveryStatus,
    Granularity,
    GroupModel,
    Job,
    JobCosts,
    JobStatus,
    JobSummary,
    LlmCallResponse,
    LoginResponse,
    LowCreditTeams,
    ModelGroup,
    ModelPrice,
    Organization,
    OrganizationPage,
    Overview,
    Page,
    QueueItem,
    QueueSubmitted,
    SortOrder,
    Team,
    TeamSort,
    TeamStatus,
    TeamSummary,
    TimeSeries,
    TransactionPage,
    TransactionType,
    Usage,
    WebhookDelivery,
    WebhookDeliveryPage,
    WebhookEndpoint,
    WebhookEndpointWithSecret,
    WebhookEventType,
)


class _Transport:
    """Auth, JSON, timeouts and retries. Every POST carries one Idempotency-Key for all its attempts, so a retry
    after a lost answer replays the first answer on the server instead of creating or charging twice."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float,
        max_retries: int,
        http_client: httpx.AsyncClient | None,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.api_key = api_key
        self.max_retries = max_retries
        self.http = http_client or httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)

    async def send(self, request: ApiRequest) -> httpx.Response:
        """The answer of a 2xx: read for JSON, open for a stream (retries end once its headers arrived)."""
        attempt = 0
        while True:
            headers: httpx.Headers | None = None
            try:
                response = await self.http.send(request.to_httpx(self.http, self.api_key), stream=request.stream)
            except httpx.TransportError as cause:
                error = transport_error(cause)
            else:
                if response.is_success:
                    return response
                await response.aread()
                await response.aclose()
                error, headers = error_of(response), response.headers
            if attempt >= self.max_retries or not is_retryable(error):
                raise error
            await asyncio.sleep(retry_delay(attempt, headers))
            attempt += 1

    async def json(self, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None, idempotency_key: str | None = None) -> Any:
        request = ApiRequest(method, path, body, query or {}, idempotency_key)
        return parse_json(await self.send(request))

    async def stream(self, path: str, body: Any, idempotency_key: str | None = None) -> httpx.Response:
        return await self.send(ApiRequest("POST", path, body, {}, idempotency_key, stream=True))

    async def text(self, path: str, *, query: dict[str, Any], accept: str) -> str:
        return (await self.send(ApiRequest("GET", path, query=query, accept=accept))).text


class _Closable:
    _transport: _Transport

    async def aclose(self) -> None:
        await self._transport.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()


# How long job() waits for the server to record calls it stopped before it completes the job.
CALLS_END_WAIT_S = 10.0


def _with_costs(answer: Any) -> Any:
    """The answer with its `costs` also at the top level, as the seed's clients read them."""
    return {**answer, **answer["costs"]}


class AsyncJobContext:
    """The job a `async with client.job(...)` block works in; `result` is the settled job once the block has ended."""

    def __init__(self, client: AsyncClient, created: CreateJobResponse) -> None:
        self._client = client
        self.created = created
        self.job_id = created["job_id"]
        self.result: CompletedJob | None = None
        self._streams: list[AsyncChatStream] = []

    async def llm_call(self, messages: list[ChatMessage], *, model: str | None = None, idempotency_key: str | None = None, **params: Any) -> LlmCallResponse:
        return await self._client.llm_call(self.job_id, messages, model=model, idempotency_key=idempotency_key, **params)

    async def chat_stream(self, messages: list[ChatMessage], *, model: str | None = None, idempotency_key: str | None = None, **params: Any) -> AsyncChatStream:
        stream = await self._client.chat_stream(self.job_id, messages, model=model, idempotency_key=idempotency_key, **params)
        self._streams.append(stream)
        return stream

    async def _complete(self, status: str, *, error_message: str | None = None, metadata: dict[str, Any] | None = None) -> CompletedJob:
        """Stops the block's unfinished streams (a job cannot be completed while one of its calls runs), then
        completes the job, retrying while the server still records a call that was just stopped."""
        for stream in self._streams:
            await stream.aclose()
        deadline = time.monotonic() + CALLS_END_WAIT_S
        while True:
            try:
                return await self._client.complete_job(self.job_id, status, error_message=error_message, metadata=metadata)
            except ConflictError as error:
                if error.code != "calls_in_progress" or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def get(self) -> Job:
        return await self._client.get_job(self.job_id)

    async def costs(self) -> JobCosts:
        return await self._client.get_costs(self.job_id)


class AsyncClient(_Closable):
    """The job API with a team virtual key (`sk-...`): jobs, calls (plain and streamed), the queue, and the
    team's own credits and usage. OpenAI chat parameters (temperature, max_tokens, tools, ...) pass as keywords."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._transport = _Transport(base_url, api_key, timeout=timeout, max_retries=max_retries, http_client=http_client, transport=transport)

    async def create_job(
        self,
        team_id: str,
        job_type: str,
        *,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> CreateJobResponse:
        body = body_of(team_id=team_id, job_type=job_type, user_id=user_id, metadata=metadata)
        return cast(CreateJobResponse, await self._transport.json("POST", "/api/jobs/create", body, idempotency_key=idempotency_key))

    @asynccontextmanager
    async def job(
        self,
        team_id: str,
        job_type: str,
        *,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        completion_metadata: dict[str, Any] | None = None,
    ) -> AsyncIterator[AsyncJobContext]:
        """Creates a job for the block and completes it: `completed` when the block ends normally, `failed` when it
        raises (the exception goes on). Either way the job is settled by the team's billing policy."""
        context = AsyncJobContext(self, await self.create_job(team_id, job_type, user_id=user_id, metadata=metadata))
        try:
            yield context
        except BaseException as error:
            message = (str(error) or type(error).__name__)[:4000]
            try:
                context.result = await context._complete("failed", error_message=message, metadata=completion_metadata)
            except CreditgateError:
                # The block's exception matters more; a job that could not be failed is expired by the server later.
                pass
            raise
        context.result = await context._complete("completed", metadata=completion_metadata)

    async def get_job(self, job_id: str) -> Job:
        return cast(Job, await self._transport.json("GET", f"/api/jobs/{segment(job_id)}"))

    async def get_costs(self, job_id: str) -> JobCosts:
        return cast(JobCosts, await self._transport.json("GET", f"/api/jobs/{segment(job_id)}/costs"))

    async def update_job_metadata(self, job_id: str, metadata: dict[str, Any]) -> Job:
        """Merges the keys into the job's metadata; a key set to None is removed."""
        return cast(Job, await self._transport.json("PATCH", f"/api/jobs/{segment(job_id)}/metadata", {"metadata": metadata}))

    async def llm_call(self, job_id: str, messages: list[ChatMessage], *, model: str | None = None, idempotency_key: str | None = None, **params: Any) -> LlmCallResponse:
        body = body_of(messages=messages, model=model, **params)
        return cast(LlmCallResponse, await self._transport.json("POST", f"/api/jobs/{segment(job_id)}/llm-call", body, idempotency_key=idempotency_key))

    async def chat_stream(self, job_id: str, messages: list[ChatMessage], *, model: str | None = None, idempotency_key: str | None = None, **params: Any) -> AsyncChatStream:
        body = body_of(messages=messages, model=model, **params)
        return AsyncChatStream(await self._transport.stream(f"/api/jobs/{segment(job_id)}/llm-call-stream", body, idempotency_key), job_id)

    async def complete_job(
        self,
        job_id: str,
        status: str = "completed",
        *,
        metadata: dict[str, Any] | None = None,
        error_message: str | None = None,
        idempotency_key: str | None = None,
    ) -> CompletedJob:
        """Settles the job once (`completed` or `failed`); completing again with the same status replays the answer."""
        body = body_of(status=status, metadata=metadata, error_message=error_message)
        answer = await self._transport.json("POST", f"/api/jobs/{segment(job_id)}/complete", body, idempotency_key=idempotency_key)
        return cast(CompletedJob, _with_costs(answer))

    async def cancel_job(self, job_id: str) -> CompletedJob:
        """Ends the job `cancelled`; its calls in flight are aborted on whichever instance runs them."""
        return cast(CompletedJob, _with_costs(await self._transport.json("POST", f"/api/jobs/{segment(job_id)}/cancel")))

    async def create_and_call(
        self,
        team_id: str,
        job_type: str,
        messages: list[ChatMessage],
        *,
        model: str | None = None,
        user_id: str | None = None,
        job_metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        **params: Any,
    ) -> CreateAndCallResult:
        body = body_of(team_id=team_id, job_type=job_type, messages=messages, model=model, user_id=user_id, job_metadata=job_metadata, **params)
        return cast(CreateAndCallResult, _with_costs(await self._transport.json("POST", "/api/jobs/create-and-call", body, idempotency_key=idempotency_key)))

    async def create_and_call_stream(
        self,
        team_id: str,
        job_type: str,
        messages: list[ChatMessage],
        *,
        model: str | None = None,
        user_id: str | None = None,
        job_metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        **params: Any,
    ) -> AsyncChatStream:
        """The job is completed and charged by the server after the last chunk; the stream's `job_id` names it."""
        body = body_of(team_id=team_id, job_type=job_type, messages=messages, model=model, user_id=user_id, job_metadata=job_metadata, **params)
        return AsyncChatStream(await self._transport.stream("/api/jobs/create-and-call-stream", body, idempotency_key))

    async def submit(self, messages: list[ChatMessage], model: str, *, job_id: str | None = None, provider: str | None = None, idempotency_key: str | None = None, **params: Any) -> QueueSubmitted:
        """Starts the call server-side now; follow it with `stream_queue`, stop it with `cancel_queue`."""
        body = body_of(messages=messages, model=model, stream=True, job_id=job_id, provider=provider, **params)
        return cast(QueueSubmitted, (await self._transport.json("POST", "/api/llm/complete", body, idempotency_key=idempotency_key))["data"])

    async def stream_queue(self, queue_id: str) -> AsyncQueueStream:
        """Every event of the queued call from its start (a late reader gets a replay), then live ones, to `done`."""
        return AsyncQueueStream(await self._transport.stream("/api/llm/queue/stream", {"queueId": queue_id}))

    async def cancel_queue(self, queue_id: str) -> QueueSubmitted:
        return cast(QueueSubmitted, (await self._transport.json("POST", "/api/llm/queue/cancel", {"queueId": queue_id}))["data"])

    async def get_queued(self, queue_id: str) -> QueueItem:
        return cast(QueueItem, await self._transport.json("GET", f"/api/llm/queue/{segment(queue_id)}"))

    async def get_balance(self, team_id: str) -> CreditBalance:
        return cast(CreditBalance, await self._transport.json("GET", f"/api/credits/teams/{segment(team_id)}/balance"))

    async def get_transactions(self, team_id: str, *, limit: int | None = None, cursor: str | None = None) -> TransactionPage:
        """The team's ledger, newest first."""
        query = {"limit": limit, "cursor": cursor}
        return cast(TransactionPage, await self._transport.json("GET", f"/api/credits/teams/{segment(team_id)}/transactions", query=query))

    async def get_usage(self, team_id: str, *, from_: str | None = None, to: str | None = None) -> Usage:
        return cast(Usage, await self._transport.json("GET", f"/api/teams/{segment(team_id)}/usage", query={"from": from_, "to": to}))


class _Organizations:
    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    async def create(self, organization_id: str, name: str, *, metadata: dict[str, Any] | None = None) -> Organization:
        return cast(Organization, await self._t.json("POST", "/api/organizations/create", body_of(organization_id=organization_id, name=name, metadata=metadata)))

    async def list(self, *, limit: int | None = None, cursor: str | None = None) -> OrganizationPage:
        return cast(OrganizationPage, await self._t.json("GET", "/api/organizations", query={"limit": limit, "cursor": cursor}))

    async def get(self, organization_id: str) -> Organization:
        return cast(Organization, await self._t.json("GET", f"/api/organizations/{segment(organization_id)}"))

    async def usage(self, organization_id: str, *, from_: str | None = None, to: str | None = None, period: str | None = None) -> Usage:
        """`period`: a calendar month (UTC), `YYYY-MM`, instead of `from_` and `to`."""
        query = {"from": from_, "to": to, "period": period}
        return cast(Usage, await self._t.json("GET", f"/api/organizations/{segment(organization_id)}/usage", query=query))

    async def teams(
        self,
        organization_id: str,
        *,
        status: TeamStatus | None = None,
        q: str | None = None,
        sort: TeamSort | None = None,
        order: SortOrder | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[TeamSummary]:
        """The organization's teams, filtered, sorted and paged as `teams.list`."""
        query = {"status": status, "q": q, "sort": sort, "order": order, "limit": limit, "cursor": cursor}
        return cast(Page[TeamSummary], await self._t.json("GET", f"/api/organizations/{segment(organization_id)}/teams", query=query))


# `list` is a method name in the resource classes below.
GroupModels = list[GroupModel]


class _ModelGroups:
    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    async def create(self, group_name: str, models: list[GroupModel], *, display_name: str | None = None, description: str | None = None) -> ModelGroup:
        body = body_of(group_name=group_name, models=models, display_name=display_name, description=description)
        return cast(ModelGroup, await self._t.json("POST", "/api/model-groups/create", body))

    async def list(self) -> list[ModelGroup]:
        return cast(list[ModelGroup], (await self._t.json("GET", "/api/model-groups"))["data"])

    async def get(self, group_name: str) -> ModelGroup:
        return cast(ModelGroup, await self._t.json("GET", f"/api/model-groups/{segment(group_name)}"))

    async def update(self, group_name: str, *, models: GroupModels | None = None, display_name: str | None = None, description: str | None = None) -> ModelGroup:
        """`models`, when given, replaces the whole list."""
        body = body_of(models=models, display_name=display_name, description=description)
        return cast(ModelGroup, await self._t.json("PUT", f"/api/model-groups/{segment(group_name)}", body))

    async def delete(self, group_name: str) -> None:
        await self._t.json("DELETE", f"/api/model-groups/{segment(group_name)}")


class _Teams:
    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    async def create(self, organization_id: str, team_id: str, **settings: Any) -> CreateTeamResponse:
        """Settings: team_alias, model_groups, credits_allocated, budget_mode, credits_per_job, tokens_per_credit,
        credits_per_dollar, metadata, ... The answer's `virtual_key` is shown only this once."""
        body = body_of(organization_id=organization_id, team_id=team_id, **settings)
        return cast(CreateTeamResponse, await self._t.json("POST", "/api/teams/create", body))

    async def get(self, team_id: str) -> Team:
        return cast(Team, await self._t.json("GET", f"/api/teams/{segment(team_id)}"))

    async def list(
        self,
        *,
        organization_id: str | None = None,
        status: TeamStatus | None = None,
        q: str | None = None,
        sort: TeamSort | None = None,
        order: SortOrder | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[TeamSummary]:
        """`q` matches part of the team id or alias; archived teams are listed only with `status="archived"`."""
        query = {"organization_id": organization_id, "status": status, "q": q, "sort": sort, "order": order, "limit": limit, "cursor": cursor}
        return cast(Page[TeamSummary], await self._t.json("GET", "/api/teams", query=query))

    async def update(self, team_id: str, **changes: Any) -> Team:
        """Changes: team_alias, model_groups (replaces the list; the first is the default), budget_mode,
        credits_per_job, tokens_per_credit, credits_per_dollar, limits, balance_alerts, stripe_customer_id,
        metadata, ... Fields left out stay as they are; None clears a nullable one."""
        return cast(Team, await self._t.json("PATCH", f"/api/teams/{segment(team_id)}", changes))

    async def delete(self, team_id: str) -> Team:
        """Archives the team: its keys are revoked, its ledger, jobs and calls kept. 409 while it has open jobs or credits."""
        return cast(Team, await self._t.json("DELETE", f"/api/teams/{segment(team_id)}"))

    async def jobs(
        self,
        team_id: str,
        *,
        status: JobStatus | None = None,
        job_type: str | None = None,
        from_: str | None = None,
        to: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[JobSummary]:
        """The team's jobs, newest first."""
        query = {"status": status, "job_type": job_type, "from": from_, "to": to, "limit": limit, "cursor": cursor}
        return cast(Page[JobSummary], await self._t.json("GET", f"/api/teams/{segment(team_id)}/jobs", query=query))

    async def suspend(self, team_id: str) -> Team:
        return cast(Team, await self._t.json("PUT", f"/api/teams/{segment(team_id)}/suspend"))

    async def resume(self, team_id: str) -> Team:
        return cast(Team, await self._t.json("PUT", f"/api/teams/{segment(team_id)}/resume"))

    async def usage(self, team_id: str, *, from_: str | None = None, to: str | None = None, period: str | None = None) -> Usage:
        """`period`: a calendar month (UTC), `YYYY-MM`, instead of `from_` and `to`."""
        return cast(Usage, await self._t.json("GET", f"/api/teams/{segment(team_id)}/usage", query={"from": from_, "to": to, "period": period}))


class _Keys:
    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    async def create(self, team_id: str, *, name: str | None = None, expires_at: str | None = None) -> CreatedApiKey:
        """The answer's `virtual_key` is shown only this once."""
        return cast(CreatedApiKey, await self._t.json("POST", f"/api/teams/{segment(team_id)}/keys", body_of(name=name, expires_at=expires_at)))

    async def list(self, team_id: str) -> list[ApiKey]:
        return cast(list[ApiKey], (await self._t.json("GET", f"/api/teams/{segment(team_id)}/keys"))["data"])

    async def update(self, key_id: str, **changes: Any) -> ApiKey:
        """Changes: name (None clears it), limits. Fields left out stay as they are."""
        return cast(ApiKey, await self._t.json("PATCH", f"/api/keys/{segment(key_id)}", changes))

    async def revoke(self, key_id: str) -> ApiKey:
        return cast(ApiKey, await self._t.json("DELETE", f"/api/keys/{segment(key_id)}"))


class _Jobs:
    """Every team's jobs, as an admin sees them."""

    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    async def list(
        self,
        *,
        team_id: str | None = None,
        status: JobStatus | None = None,
        job_type: str | None = None,
        from_: str | None = None,
        to: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[JobSummary]:
        """Newest first; `from_` (inclusive) and `to` (exclusive) bound the creation time."""
        query = {"team_id": team_id, "status": status, "job_type": job_type, "from": from_, "to": to, "limit": limit, "cursor": cursor}
        return cast(Page[JobSummary], await self._t.json("GET", "/api/jobs", query=query))

    async def get(self, job_id: str) -> Job:
        """The job with its calls, in order (content and tool calls included)."""
        return cast(Job, await self._t.json("GET", f"/api/jobs/{segment(job_id)}"))

    async def cancel(self, job_id: str) -> CompletedJob:
        """Aborts its calls in flight and ends it `cancelled`; it pays for what it delivered."""
        return cast(CompletedJob, _with_costs(await self._t.json("POST", f"/api/jobs/{segment(job_id)}/cancel")))

    async def update_metadata(self, job_id: str, metadata: dict[str, Any]) -> Job:
        """Merges the keys into the job's metadata; a key set to None is removed."""
        return cast(Job, await self._t.json("PATCH", f"/api/jobs/{segment(job_id)}/metadata", {"metadata": metadata}))


class _Credits:
    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    async def balance(self, team_id: str) -> CreditBalance:
        return cast(CreditBalance, await self._t.json("GET", f"/api/credits/teams/{segment(team_id)}/balance"))

    async def add(self, team_id: str, credits: int, reason: str, *, idempotency_key: str | None = None) -> AddCreditsResponse:
        """Retrying with the same `idempotency_key` never adds twice."""
        body = {"credits": credits, "reason": reason}
        return cast(AddCreditsResponse, await self._t.json("POST", f"/api/credits/teams/{segment(team_id)}/add", body, idempotency_key=idempotency_key))

    async def deduct(self, team_id: str, credits: int, reason: str, *, idempotency_key: str | None = None) -> DeductCreditsResponse:
        """Never more than the team has available (409 `exceeds_available_credits` otherwise); retrying with the
        same `idempotency_key` never deducts twice."""
        body = {"credits": credits, "reason": reason}
        return cast(DeductCreditsResponse, await self._t.json("POST", f"/api/credits/teams/{segment(team_id)}/deduct", body, idempotency_key=idempotency_key))

    async def transactions(
        self,
        team_id: str,
        *,
        type: TransactionType | None = None,
        from_: str | None = None,
        to: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> TransactionPage:
        """The ledger, newest first; `from_` (inclusive) and `to` (exclusive) bound the entries' time."""
        query = {"type": type, "from": from_, "to": to, "limit": limit, "cursor": cursor}
        return cast(TransactionPage, await self._t.json("GET", f"/api/credits/teams/{segment(team_id)}/transactions", query=query))

    async def export_csv(
        self,
        team_id: str,
        *,
        type: TransactionType | None = None,
        from_: str | None = None,
        to: str | None = None,
        period: str | None = None,
    ) -> str:
        """The ledger as CSV text with a header line, oldest first; `period` (`YYYY-MM`) instead of `from_` and `to`."""
        query = {"type": type, "from": from_, "to": to, "period": period}
        return await self._t.text(f"/api/credits/teams/{segment(team_id)}/transactions.csv", query=query, accept="text/csv")

    async def balance_history(self, team_id: str, *, from_: str | None = None, to: str | None = None, period: str | None = None) -> BalanceHistory:
        """The balance and held credits at the end of each day (UTC), with the credits that came in and went out."""
        query = {"from": from_, "to": to, "period": period}
        return cast(BalanceHistory, await self._t.json("GET", f"/api/credits/teams/{segment(team_id)}/balance-history", query=query))

    async def set_budget_mode(self, team_id: str, budget_mode: BudgetMode, **settings: Any) -> CreditBalance:
        """Settings: credits_per_job, tokens_per_credit, credits_per_dollar, ..."""
        body = body_of(budget_mode=budget_mode, **settings)
        return cast(CreditBalance, await self._t.json("PATCH", f"/api/credits/teams/{segment(team_id)}/budget-mode", body))


class _ModelPrices:
    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    async def list(self) -> list[ModelPrice]:
        return cast(list[ModelPrice], (await self._t.json("GET", "/api/model-prices"))["data"])

    async def set(self, model_name: str, *, input_usd_per_million: str | float, output_usd_per_million: str | float) -> ModelPrice:
        body = {"input_usd_per_million": input_usd_per_million, "output_usd_per_million": output_usd_per_million}
        return cast(ModelPrice, await self._t.json("PUT", f"/api/model-prices/{segment(model_name)}", body))


class _AdminUsers:
    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    async def create(self, email: str, password: str) -> AdminUser:
        return cast(AdminUser, await self._t.json("POST", "/api/admin-users/create", {"email": email, "password": password}))

    async def login(self, email: str, password: str) -> LoginResponse:
        """The `access_token` works as the `api_key` of another AdminClient."""
        return cast(LoginResponse, await self._t.json("POST", "/api/admin-users/login", {"email": email, "password": password}))

    async def me(self) -> AdminIdentity:
        return cast(AdminIdentity, await self._t.json("GET", "/api/admin-users/me"))

    async def exists(self) -> AdminSetupStatus:
        """Needs no credential: whether the first admin user was created yet."""
        return cast(AdminSetupStatus, await self._t.json("GET", "/api/admin-users/exists"))


class _Reports:
    """Summaries, time series and breakdowns of usage, cost and margin (the console's overview)."""

    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    async def overview(self, *, low_credits_threshold: int | None = None) -> Overview:
        """Credits outstanding and held; usage, cost, margin, error rate and latency today, over 7 and 30 days."""
        return cast(Overview, await self._t.json("GET", "/api/reports/overview", query={"low_credits_threshold": low_credits_threshold}))

    async def timeseries(
        self,
        *,
        from_: str | None = None,
        to: str | None = None,
        period: str | None = None,
        granularity: Granularity | None = None,
        team_id: str | None = None,
    ) -> TimeSeries:
        """One point per hour or day, for every team or one (`team_id`: no latency percentiles)."""
        query = {"from": from_, "to": to, "period": period, "granularity": granularity, "team_id": team_id}
        return cast(TimeSeries, await self._t.json("GET", "/api/reports/timeseries", query=query))

    async def breakdown(
        self,
        *,
        by: BreakdownBy | None = None,
        from_: str | None = None,
        to: str | None = None,
        period: str | None = None,
        sort: BreakdownSort | None = None,
        order: SortOrder | None = None,
        limit: int | None = None,
    ) -> Breakdown:
        """One row per team, model or job type, sorted: by default the top teams by credits charged."""
        query = {"by": by, "from": from_, "to": to, "period": period, "sort": sort, "order": order, "limit": limit}
        return cast(Breakdown, await self._t.json("GET", "/api/reports/breakdown", query=query))

    async def low_credits(self, *, threshold: int | None = None, limit: int | None = None) -> LowCreditTeams:
        """Active teams with fewer credits available than `threshold`, the lowest first."""
        return cast(LowCreditTeams, await self._t.json("GET", "/api/reports/low-credits", query={"threshold": threshold, "limit": limit}))


class _Webhooks:
    """Outgoing webhooks: the endpoints events are POSTed to, and each delivery of an event to one of them."""

    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    async def create_endpoint(self, url: str, *, events: list[WebhookEventType] | None = None, description: str | None = None) -> WebhookEndpointWithSecret:
        """`events` left out: every type. The answer's `secret` (the signing secret) is shown only this once."""
        body = body_of(url=url, events=events, description=description)
        return cast(WebhookEndpointWithSecret, await self._t.json("POST", "/api/webhooks/endpoints", body))

    async def list_endpoints(self) -> list[WebhookEndpoint]:
        """Every endpoint, never with its secret."""
        return cast(list[WebhookEndpoint], (await self._t.json("GET", "/api/webhooks/endpoints"))["data"])

    async def update_endpoint(self, endpoint_id: str, **changes: Any) -> WebhookEndpoint:
        """Changes: url, events (None: every type), description, enabled. Fields left out stay as they are."""
        return cast(WebhookEndpoint, await self._t.json("PATCH", f"/api/webhooks/endpoints/{segment(endpoint_id)}", changes))

    async def rotate_endpoint_secret(self, endpoint_id: str) -> WebhookEndpointWithSecret:
        """A new signing secret, shown only in this answer; the old one stops signing at once."""
        body = {"rotate_secret": True}
        return cast(WebhookEndpointWithSecret, await self._t.json("PATCH", f"/api/webhooks/endpoints/{segment(endpoint_id)}", body))

    async def delete_endpoint(self, endpoint_id: str) -> None:
        """Deletes the endpoint and its deliveries."""
        await self._t.json("DELETE", f"/api/webhooks/endpoints/{segment(endpoint_id)}")

    async def list_deliveries(self, endpoint_id: str, *, status: DeliveryStatus | None = None, limit: int | None = None, cursor: str | None = None) -> WebhookDeliveryPage:
        """The endpoint's deliveries, newest first, with the endpoint's last answer."""
        query = {"status": status, "limit": limit, "cursor": cursor}
        return cast(WebhookDeliveryPage, await self._t.json("GET", f"/api/webhooks/endpoints/{segment(endpoint_id)}/deliveries", query=query))

    async def replay_delivery(self, delivery_id: str) -> WebhookDelivery:
        """Sends the delivery's event to its endpoint again (the same `webhook-id`); answers the new delivery."""
        return cast(WebhookDelivery, await self._t.json("POST", f"/api/webhooks/deliveries/{segment(delivery_id)}/replay"))


class _Billing:
    """Stripe: Checkout sessions that sell a team credits, and the team's auto-refills."""

    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    async def checkout(
        self,
        team_id: str,
        success_url: str,
        cancel_url: str,
        *,
        credits: int | None = None,
        price_id: str | None = None,
        quantity: int | None = None,
        idempotency_key: str | None = None,
    ) -> CheckoutSession:
        """A session selling `credits` at CREDIT_PRICE_USD each, or `quantity` units of a STRIPE_PRICE_CREDITS
        price; the credits are granted when Stripe reports it paid. 409 `stripe_not_configured` without
        STRIPE_SECRET_KEY."""
        body = body_of(success_url=success_url, cancel_url=cancel_url, credits=credits, price_id=price_id, quantity=quantity)
        return cast(CheckoutSession, await self._t.json("POST", f"/api/teams/{segment(team_id)}/checkout", body, idempotency_key=idempotency_key))

    async def refills(self, team_id: str, *, limit: int | None = None, cursor: str | None = None) -> Page[CreditRefill]:
        """The team's auto-refills, newest first, with their status and why any failed."""
        return cast(Page[CreditRefill], await self._t.json("GET", f"/api/teams/{segment(team_id)}/refills", query={"limit": limit, "cursor": cursor}))


class AsyncAdminClient(_Closable):
    """The admin API, grouped by resource: `admin.teams.create(...)`, `admin.credits.add(...)`, `admin.jobs.list()`,
    `admin.reports.overview()`, `admin.webhooks.create_endpoint(...)`, `admin.billing.checkout(...)`."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`api_key`: the MASTER_KEY or an admin JWT; it may be left out only to `admin_users.login`."""
        self._transport = _Transport(base_url, api_key, timeout=timeout, max_retries=max_retries, http_client=http_client, transport=transport)
        self.organizations = _Organizations(self._transport)
        self.model_groups = _ModelGroups(self._transport)
        self.teams = _Teams(self._transport)
        self.keys = _Keys(self._transport)
        self.jobs = _Jobs(self._transport)
        self.credits = _Credits(self._transport)
        self.model_prices = _ModelPrices(self._transport)
        self.admin_users = _AdminUsers(self._transport)
        self.reports = _Reports(self._transport)
        self.webhooks = _Webhooks(self._transport)
        self.billing = _Billing(self._transport)
