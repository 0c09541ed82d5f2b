"""The asyncio client: the same API with `await`, `async with client.job(...)`, `async for` over streams."""

from __future__ import annotations

import asyncio
import time

import pytest

from conftest import NewTeam, Server
from creditgate import AsyncClient, InsufficientCreditsError, QueueEvent
from test_streaming import MESSAGES, _closed_early, assert_upstream_stopped, calls_in_flight


def test_async_job_with_a_stream_is_completed_and_charged_once(server: Server, new_team: NewTeam) -> None:
    team = new_team(3)

    async def run() -> None:
        async with AsyncClient(server.url, team.key) as client:
            async with client.job(team.team_id, "async-chat") as job:
                stream = await job.chat_stream([{"role": "user", "content": "Hello async"}])
                async with stream:
                    chunks = [chunk async for chunk in stream]
                assert chunks[0]["object"] == "chat.completion.chunk"
                assert stream.text.startswith('Simulated reply to: "Hello async"')
                answer = await job.llm_call([{"role": "user", "content": "Again"}])
                assert answer["metadata"]["job_id"] == job.job_id
            assert job.result is not None
            assert (job.result["status"], job.result["total_calls"], job.result["credits_remaining"]) == ("completed", 2, 2)
            balance = await client.get_balance(team.team_id)
            assert (balance["balance"], balance["held"]) == (2, 0)

    asyncio.run(run())


def test_async_job_that_raises_is_failed_and_the_exception_goes_on(server: Server, new_team: NewTeam) -> None:
    team = new_team(2)

    async def run() -> str:
        async with AsyncClient(server.url, team.key) as client:
            with pytest.raises(RuntimeError, match="tool crashed"):
                async with client.job(team.team_id, "async-fails") as job:
                    raise RuntimeError("tool crashed")
            recorded = await client.get_job(job.job_id)
            assert (recorded["status"], recorded["error_message"]) == ("failed", "tool crashed")
            # The team had 2 credits and the failed job cost none: two jobs fit, a third is refused.
            await client.create_job(team.team_id, "a")
            await client.create_job(team.team_id, "b")
            with pytest.raises(InsufficientCreditsError):
                await client.create_job(team.team_id, "c")
            return job.job_id

    assert asyncio.run(run()).startswith("job_")


def test_async_stream_closed_early_disconnects_and_the_call_is_recorded_cancelled(server: Server, new_team: NewTeam) -> None:
    team = new_team(3)
    full_answer_ms = team.client.create_and_call(team.team_id, "reference", MESSAGES)["metadata"]["latency_ms"]
    opened_at = time.monotonic()

    async def run() -> str:
        async with AsyncClient(server.url, team.key) as client:
            stream = await client.create_and_call_stream(team.team_id, "async-closed", MESSAGES)
            async for _chunk in stream:
                if stream.text:
                    break
            assert calls_in_flight(server) >= 1
            await stream.aclose()
            return stream.text

    partial = asyncio.run(run())
    assert partial
    assert_upstream_stopped(server, opened_at, full_answer_ms)
    job = _closed_early(team.client, team.client.get_transactions(team.team_id)["data"][0]["job_id"], settled=True)
    assert job["calls"][0]["response_content"] is not None
    assert job["calls"][0]["response_content"].startswith(partial)


def test_async_queue_submit_and_stream(server: Server, new_team: NewTeam) -> None:
    team = new_team(3)

    async def run() -> list[QueueEvent]:
        async with AsyncClient(server.url, team.key) as client:
            submitted = await client.submit([{"role": "user", "content": "Queued async"}], team.group)
            stream = await client.stream_queue(submitted["queueId"])
            return [event async for event in stream]

    events = asyncio.run(run())
    assert [events[0]["event"], events[-1]["event"]] == ["start", "done"]
    text = "".join(str(event["data"]["delta"]) for event in events if event["event"] == "chunk")
    assert text.startswith('Simulated reply to: "Queued async"')


def test_async_job_stops_a_stream_its_block_left_open_before_failing_the_job(server: Server, new_team: NewTeam) -> None:
    team = new_team(5)

    async def run() -> str:
        async with AsyncClient(server.url, team.key) as client:
            with pytest.raises(RuntimeError, match="gave up"):
                async with client.job(team.team_id, "async-raises-mid-stream") as job:
                    stream = await job.chat_stream(MESSAGES)
                    chunks = aiter(stream)
                    while not stream.text:
                        await anext(chunks)
                    raise RuntimeError("gave up")
            return job.job_id

    recorded = team.client.get_job(asyncio.run(run()))
    assert recorded["status"] == "failed"
    assert recorded["calls"][0]["status"] == "cancelled"
