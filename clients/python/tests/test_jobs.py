"""The job API with the sync client: jobs and calls, job(), one-shot calls, credits, typed errors and retries."""

from __future__ import annotations

import httpx
import pytest

from conftest import NewTeam, Server
from creditgate import (
    AuthenticationError,
    ChatMessage,
    BadRequestError,
    Client,
    ConflictError,
    CreditgateError,
    InsufficientCreditsError,
    NotFoundError,
    PermissionDeniedError,
)

MESSAGES: list[ChatMessage] = [{"role": "user", "content": "Draft a friendly reply"}]
UNKNOWN_JOB = "job_000000000000000000000"


def test_a_job_with_two_calls_completes_once_and_exposes_its_costs_at_the_top_level(new_team: NewTeam) -> None:
    team = new_team(5)
    job = team.client.create_job(team.team_id, "ticket_reply", user_id="u-1", metadata={"ticket": "T-1"})
    assert job["status"] == "pending" and job["job_id"].startswith("job_")
    first = team.client.llm_call(job["job_id"], MESSAGES, temperature=0.2)
    assert first["call_id"].startswith("call_")
    assert first["response"]["choices"][0]["message"]["content"].startswith('Simulated reply to: "Draft a friendly reply"')
    assert first["metadata"]["model_used"] == "sim-small"
    team.client.llm_call(job["job_id"], MESSAGES, max_tokens=5)
    # Open: `pending` between calls (`in_progress` on servers before the billing rules of issue 12).
    assert team.client.get_job(job["job_id"])["status"] in ("pending", "in_progress")

    completed = team.client.complete_job(job["job_id"], "completed", metadata={"rating": 5})
    assert completed["status"] == "completed"
    assert completed["total_calls"] == 2 == completed["costs"]["total_calls"]
    assert completed["credits_charged"] == 1
    assert completed["credits_remaining"] == 4 == completed["costs"]["credits_remaining"]
    assert team.client.get_costs(job["job_id"]) == completed["costs"]
    # Completing again with the same status replays the answer and charges nothing more.
    assert team.client.complete_job(job["job_id"], "completed", metadata={"rating": 5})["credits_charged"] == 1
    balance = team.client.get_balance(team.team_id)
    assert (balance["balance"], balance["held"], balance["credits_used"]) == (4, 0, 1)


def test_job_context_manager_completes_the_job_when_the_block_succeeds(new_team: NewTeam) -> None:
    team = new_team(3)
    with team.client.job(team.team_id, "summarize", completion_metadata={"pages": 3}) as job:
        answer = job.llm_call(MESSAGES)
        assert job.get()["status"] in ("pending", "in_progress")
        assert job.result is None
    assert answer["metadata"]["job_id"] == job.job_id
    assert job.result is not None
    assert job.result["status"] == "completed"
    assert (job.result["total_calls"], job.result["credits_charged"], job.result["credits_remaining"]) == (1, 1, 2)
    assert team.client.get_job(job.job_id)["metadata"] == {"pages": 3}


def test_job_context_manager_fails_the_job_when_the_block_raises_and_lets_the_exception_through(new_team: NewTeam) -> None:
    team = new_team(3)
    with pytest.raises(ValueError, match="could not parse the document"):
        with team.client.job(team.team_id, "parse") as job:
            raise ValueError("could not parse the document")
    assert job.result is not None and job.result["status"] == "failed"
    recorded = team.client.get_job(job.job_id)
    assert recorded["status"] == "failed"
    assert recorded["error_message"] == "could not parse the document"
    # No call delivered anything: the job is free.
    assert recorded["costs"]["credits_charged"] == 0
    assert team.client.get_balance(team.team_id)["balance"] == 3


def test_create_and_call_creates_calls_and_completes_in_one_request(new_team: NewTeam) -> None:
    team = new_team(3)
    answer = team.client.create_and_call(team.team_id, "oneshot", MESSAGES, job_metadata={"source": "python"})
    assert answer["status"] == "completed"
    assert (answer["credits_charged"], answer["credits_remaining"], answer["total_calls"]) == (1, 2, 1)
    assert answer["response"]["object"] == "chat.completion"
    assert team.client.get_job(answer["job_id"])["metadata"] == {"source": "python"}


def test_cancel_job_releases_the_hold_of_a_job_without_calls(new_team: NewTeam) -> None:
    team = new_team(2)
    job = team.client.create_job(team.team_id, "cancel-me")
    assert team.client.get_balance(team.team_id)["held"] == 1
    cancelled = team.client.cancel_job(job["job_id"])
    assert (cancelled["status"], cancelled["credits_charged"], cancelled["credits_remaining"]) == ("cancelled", 0, 2)


def test_update_job_metadata_merges_keys_and_removes_the_ones_set_to_none(new_team: NewTeam) -> None:
    team = new_team(2)
    job = team.client.create_job(team.team_id, "tagged", metadata={"ticket": "T-1", "keep": True})
    updated = team.client.update_job_metadata(job["job_id"], {"ticket": None, "stage": "review"})
    assert updated["metadata"] == {"keep": True, "stage": "review"}
    assert team.client.get_job(job["job_id"])["metadata"] == {"keep": True, "stage": "review"}


def test_balance_ledger_pages_and_usage(new_team: NewTeam) -> None:
    team = new_team(4)
    team.client.create_and_call(team.team_id, "measured", MESSAGES)
    ledger = team.client.get_transactions(team.team_id, limit=50)
    assert [entry["type"] for entry in ledger["data"]] == ["charge", "hold", "grant"]
    first = team.client.get_transactions(team.team_id, limit=2)
    assert first["has_more"] and first["next_cursor"]
    rest = team.client.get_transactions(team.team_id, limit=2, cursor=first["next_cursor"])
    assert [e["transaction_id"] for e in first["data"] + rest["data"]] == [e["transaction_id"] for e in ledger["data"]]
    usage = team.client.get_usage(team.team_id)
    assert (usage["totals"]["jobs"], usage["totals"]["calls"], usage["totals"]["credits_charged"]) == (1, 1, 1)
    assert usage["by_job_type"][0]["job_type"] == "measured"


def _raised(call: object) -> CreditgateError:
    assert callable(call)
    with pytest.raises(CreditgateError) as caught:
        call()
    return caught.value


def test_errors_are_typed_by_status_and_carry_code_param_and_request_id(server: Server, new_team: NewTeam) -> None:
    team = new_team(1)
    unknown = Client(server.url, "sk-not-a-real-key")
    error = _raised(lambda: unknown.get_balance(team.team_id))
    assert isinstance(error, AuthenticationError) and error.status == 401
    assert error.request_id is not None and error.request_id.startswith("req_")

    error = _raised(lambda: team.client.create_job("not a slug!", "x"))
    assert isinstance(error, BadRequestError) and error.param == "team_id"

    team.client.create_job(team.team_id, "holds-the-only-credit")
    error = _raised(lambda: team.client.create_job(team.team_id, "one-too-many"))
    assert isinstance(error, InsufficientCreditsError) and (error.status, error.code) == (402, "insufficient_credits")

    error = _raised(lambda: team.client.get_job(UNKNOWN_JOB))
    assert isinstance(error, NotFoundError) and error.status == 404


def test_conflict_and_permission_errors(server: Server, new_team: NewTeam) -> None:
    team = new_team(3)
    job = team.client.create_job(team.team_id, "twice")
    team.client.complete_job(job["job_id"], "completed")
    error = _raised(lambda: team.client.complete_job(job["job_id"], "failed", error_message="changed my mind"))
    assert isinstance(error, ConflictError) and error.code == "job_already_settled"

    other = team.client.create_job(team.team_id, "forbidden-model")
    error = _raised(lambda: team.client.llm_call(other["job_id"], MESSAGES, model="sim-large"))
    assert isinstance(error, PermissionDeniedError) and error.param == "model"


class LoseFirstAnswer(httpx.BaseTransport):
    """Sends every request to the server, but reports the first one's answer as lost (a dropped connection)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers.get("idempotency-key"))
        response = self.inner.handle_request(request)
        if len(self.keys) == 1:
            response.read()
            response.close()
            raise httpx.RemoteProtocolError("connection lost before the answer", request=request)
        return response


def test_a_lost_answer_is_retried_with_the_same_idempotency_key_and_charged_once(server: Server, new_team: NewTeam) -> None:
    team = new_team(5)
    transport = LoseFirstAnswer()
    with Client(server.url, team.key, transport=transport) as client:
        answer = client.create_and_call(team.team_id, "retried", MESSAGES)
    assert len(transport.keys) == 2
    assert transport.keys[0] is not None and transport.keys[0] == transport.keys[1]
    assert answer["credits_charged"] == 1
    balance = team.client.get_balance(team.team_id)
    assert (balance["balance"], balance["held"]) == (4, 0)
    assert len([e for e in team.client.get_transactions(team.team_id)["data"] if e["type"] == "charge"]) == 1


def test_a_caller_chosen_idempotency_key_replays_the_first_answer(new_team: NewTeam) -> None:
    team = new_team(5)
    first = team.client.create_job(team.team_id, "order", idempotency_key="order-42")
    again = team.client.create_job(team.team_id, "order", idempotency_key="order-42")
    assert again["job_id"] == first["job_id"]
    assert team.client.get_balance(team.team_id)["held"] == 1
