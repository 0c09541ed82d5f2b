"""Streams as iterators: chunks as they come, the assembled text, and closing early, which disconnects: the
server aborts the upstream request, records the partial call and bills it by the billing policy."""

from __future__ import annotations

import time

import httpx
import pytest

from conftest import NewTeam, Server, eventually
from creditgate import ChatMessage, Client, Job

# A long question makes a long simulated answer (one word every 20 ms), so the stream is still running when closed.
QUESTION = "Please explain, step by step and in great detail, how prepaid credits, holds and charges work for a team " * 2
MESSAGES: list[ChatMessage] = [{"role": "user", "content": QUESTION}]


def calls_in_flight(server: Server) -> float:
    """The server's creditgate_calls_in_flight: the model calls it runs, each from its reservation until its record
    is written, which comes after its upstream request ended."""
    metrics = httpx.get(f"{server.url}/metrics").text
    return float(next(line.split()[1] for line in metrics.splitlines() if line.startswith("creditgate_calls_in_flight ")))


def assert_upstream_stopped(server: Server, opened_at: float, full_answer_ms: int) -> None:
    """The stream's call leaves the server's calls in flight sooner after the close than its whole answer would
    have taken (`full_answer_ms`, measured on a call of the same question): its upstream request was aborted,
    not read to its end."""

    def none_in_flight() -> None:
        assert calls_in_flight(server) == 0

    eventually(none_in_flight)
    assert (time.monotonic() - opened_at) * 1000 < full_answer_ms


def test_a_stream_yields_openai_chunks_and_assembles_the_text(new_team: NewTeam) -> None:
    team = new_team(3)
    job = team.client.create_job(team.team_id, "chat")
    texts: list[str] = []
    with team.client.chat_stream(job["job_id"], [{"role": "user", "content": "Hi"}], stream_options={"include_usage": True}) as stream:
        assert stream.job_id == job["job_id"]
        assert stream.call_id is not None and stream.call_id.startswith("call_")
        for chunk in stream:
            assert chunk["object"] == "chat.completion.chunk"
            texts.append(stream.text)
        final = stream.final_call()
    assert final["content"].startswith('Simulated reply to: "Hi"')
    assert final["finish_reason"] == "stop"
    assert "usage" in final and final["usage"]["total_tokens"] > 0
    assert len(set(texts)) > 3, "the text grows chunk by chunk"
    assert team.client.get_job(job["job_id"])["calls"][0]["response_content"] == final["content"]


def test_create_and_call_stream_completes_and_charges_its_job_by_the_end_of_the_stream(new_team: NewTeam) -> None:
    team = new_team(3)
    stream = team.client.create_and_call_stream(team.team_id, "oneshot-stream", [{"role": "user", "content": "Hello"}])
    content = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in stream if chunk["choices"])
    assert content == stream.text
    assert stream.job_id is not None
    job = team.client.get_job(stream.job_id)
    assert (job["status"], job["costs"]["credits_charged"]) == ("completed", 1)


def _closed_early(client: Client, stream_job_id: str | None, *, settled: bool = False) -> Job:
    """The job once its cancelled call was recorded (and, for a one-shot, the job settled): the server does both
    within a second of the disconnect."""
    assert stream_job_id is not None
    job_id: str = stream_job_id

    def recorded() -> Job:
        job = client.get_job(job_id)
        assert job["calls"] and job["calls"][0]["status"] == "cancelled", job["calls"]
        assert not settled or job["status"] == "cancelled", job["status"]
        return job

    return eventually(recorded)


def test_closing_a_one_shot_stream_early_aborts_the_upstream_and_bills_what_was_used(server: Server, new_team: NewTeam) -> None:
    # Consumption billing: the job is charged for the tokens its partial call used, whatever its final status.
    team = new_team(10, budget_mode="consumption_tokens", tokens_per_credit=1000)
    reference = team.client.create_and_call(team.team_id, "reference", MESSAGES)
    full = reference["response"]["choices"][0]["message"]["content"]
    before = team.client.get_balance(team.team_id)["balance"]

    opened_at = time.monotonic()
    stream = team.client.create_and_call_stream(team.team_id, "closed-early", MESSAGES)
    received = 0
    for chunk in stream:
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            received += 1
            if received == 3:
                break
    assert calls_in_flight(server) >= 1
    stream.close()
    partial = stream.text
    assert_upstream_stopped(server, opened_at, reference["metadata"]["latency_ms"])

    job = _closed_early(team.client, stream.job_id, settled=True)
    call = job["calls"][0]
    # The upstream request was aborted: the record holds only part of the answer the model was producing.
    assert call["response_content"] is not None and full.startswith(call["response_content"])
    assert partial and call["response_content"].startswith(partial)
    assert len(call["response_content"]) < len(full)
    assert call["completion_tokens"] > 0
    costs = job["costs"]
    assert costs["credit_applied"]
    assert 0 < costs["credits_charged"] < 1
    assert abs(costs["credits_charged"] - costs["total_tokens"] / 1000) <= 0.000001
    balance = team.client.get_balance(team.team_id)
    assert balance["held"] == 0
    assert abs(balance["balance"] - (before - costs["credits_charged"])) <= 0.000001


def test_closing_a_stream_inside_a_job_records_the_partial_call_and_the_job_is_charged_when_completed(new_team: NewTeam) -> None:
    team = new_team(5)
    with team.client.job(team.team_id, "conversation") as job:
        stream = job.chat_stream(MESSAGES)
        for chunk in stream:
            if stream.text:
                break
        stream.close()
        recorded = _closed_early(team.client, job.job_id)
        assert recorded["status"] in ("pending", "in_progress")
        content = recorded["calls"][0]["response_content"]
        assert content is not None and content.startswith(stream.text)
        # The job goes on: another call in the same job.
        second = job.llm_call([{"role": "user", "content": "And briefly?"}])
        assert second["response"]["choices"][0]["message"]["content"]
    assert job.result is not None
    # job_based: a completed job whose calls delivered output costs credits_per_job.
    assert (job.result["status"], job.result["total_calls"], job.result["credits_charged"]) == ("completed", 2, 1)
    assert team.client.get_balance(team.team_id)["balance"] == 4


def test_closing_a_one_shot_stream_early_in_job_based_mode_charges_credits_per_job(new_team: NewTeam) -> None:
    # Output was delivered before the client left: the job is cancelled and, in job_based mode, costs credits_per_job.
    team = new_team(3)
    with team.client.create_and_call_stream(team.team_id, "left-early", MESSAGES) as stream:
        for _chunk in stream:
            if stream.text:
                break
    job = _closed_early(team.client, stream.job_id, settled=True)
    call = job["calls"][0]
    assert call.get("delivered") is True
    assert call["response_content"] is not None and call["response_content"].startswith(stream.text)
    assert (job["costs"]["credits_charged"], job["costs"]["credits_remaining"]) == (1, 2)
    balance = team.client.get_balance(team.team_id)
    assert (balance["balance"], balance["held"]) == (2, 0)


def test_job_stops_a_stream_its_block_left_open_before_failing_the_job(new_team: NewTeam) -> None:
    team = new_team(5)
    with pytest.raises(RuntimeError, match="the reader gave up"):
        with team.client.job(team.team_id, "raises-mid-stream") as job:
            stream = job.chat_stream(MESSAGES)
            chunks = iter(stream)
            while not stream.text:
                next(chunks)
            raise RuntimeError("the reader gave up")
    assert job.result is not None
    recorded = team.client.get_job(job.job_id)
    assert (recorded["status"], recorded["error_message"]) == ("failed", "the reader gave up")
    content = recorded["calls"][0]["response_content"]
    assert recorded["calls"][0]["status"] == "cancelled" and content is not None and content.startswith(stream.text)
    # Output was delivered and the team does not waive failed jobs: credits_per_job.
    assert recorded["costs"]["credits_charged"] == 1


def test_job_completes_when_its_block_ends_with_an_unfinished_stream(new_team: NewTeam) -> None:
    team = new_team(5)
    with team.client.job(team.team_id, "ends-mid-stream") as job:
        stream = job.chat_stream(MESSAGES)
        chunks = iter(stream)
        while not stream.text:
            next(chunks)
    assert job.result is not None
    assert (job.result["status"], job.result["total_calls"], job.result["credits_charged"]) == ("completed", 1, 1)
    assert job.result["calls"][0]["status"] == "cancelled"
