"""The asyncio clients: AsyncClient and AsyncAdminClient, the twins of Client and AdminClient."""

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
from ._streaming import AsyncChatStream, AsyncQueueStream
from ._types import (
    AddCreditsResponse,
    AdminIdentity,
    AdminUser,
    ApiKey,
    BudgetMode,
    ChatMessage,
    CompletedJob,
    CreateAndCallResult,
    CreatedApiKey,
    CreateJobResponse,
    CreateTeamResponse,
    CreditBalance,
    GroupModel,
    Job,
    JobCosts,
    LlmCallResponse,
    LoginResponse,
    ModelGroup,
    ModelPrice,
    Organization,
    OrganizationPage,
    QueueItem,
    QueueSubmitted,
    Team,
    TransactionPage,
    Usage,
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

    async def usage(self, organization_id: str, *, from_: str | None = None, to: str | None = None) -> Usage:
        return cast(Usage, await self._t.json("GET", f"/api/organizations/{segment(organization_id)}/usage", query={"from": from_, "to": to}))


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

    async def suspend(self, team_id: str) -> Team:
        return cast(Team, await self._t.json("PUT", f"/api/teams/{segment(team_id)}/suspend"))

    async def resume(self, team_id: str) -> Team:
        return cast(Team, await self._t.json("PUT", f"/api/teams/{segment(team_id)}/resume"))

    async def usage(self, team_id: str, *, from_: str | None = None, to: str | None = None) -> Usage:
        return cast(Usage, await self._t.json("GET", f"/api/teams/{segment(team_id)}/usage", query={"from": from_, "to": to}))


class _Keys:
    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    async def create(self, team_id: str, *, name: str | None = None, expires_at: str | None = None) -> CreatedApiKey:
        """The answer's `virtual_key` is shown only this once."""
        return cast(CreatedApiKey, await self._t.json("POST", f"/api/teams/{segment(team_id)}/keys", body_of(name=name, expires_at=expires_at)))

    async def list(self, team_id: str) -> list[ApiKey]:
        return cast(list[ApiKey], (await self._t.json("GET", f"/api/teams/{segment(team_id)}/keys"))["data"])

    async def revoke(self, key_id: str) -> ApiKey:
        return cast(ApiKey, await self._t.json("DELETE", f"/api/keys/{segment(key_id)}"))


class _Credits:
    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    async def balance(self, team_id: str) -> CreditBalance:
        return cast(CreditBalance, await self._t.json("GET", f"/api/credits/teams/{segment(team_id)}/balance"))

    async def add(self, team_id: str, credits: int, reason: str, *, idempotency_key: str | None = None) -> AddCreditsResponse:
        """Retrying with the same `idempotency_key` never adds twice."""
        body = {"credits": credits, "reason": reason}
        return cast(AddCreditsResponse, await self._t.json("POST", f"/api/credits/teams/{segment(team_id)}/add", body, idempotency_key=idempotency_key))

    async def transactions(self, team_id: str, *, limit: int | None = None, cursor: str | None = None) -> TransactionPage:
        return cast(TransactionPage, await self._t.json("GET", f"/api/credits/teams/{segment(team_id)}/transactions", query={"limit": limit, "cursor": cursor}))

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


class AsyncAdminClient(_Closable):
    """The admin API, grouped by resource: `admin.teams.create(...)`, `admin.credits.add(...)`."""

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
        self.credits = _Credits(self._transport)
        self.model_prices = _ModelPrices(self._transport)
        self.admin_users = _AdminUsers(self._transport)
