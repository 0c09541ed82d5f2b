"""The queue API: submit now, stream (replayed from the start) or cancel later."""

from __future__ import annotations

from conftest import NewTeam, eventually
from creditgate import NotFoundError
from test_streaming import MESSAGES

import pytest


def test_submit_stream_and_result(new_team: NewTeam) -> None:
    team = new_team(3)
    submitted = team.client.submit([{"role": "user", "content": "Summarise our refund policy"}], team.group)
    assert submitted["status"] == "queued" and submitted["queueId"].startswith("q_")
    with team.client.stream_queue(submitted["queueId"]) as stream:
        events = list(stream)
    assert events[0] == {"event": "start", "data": {"queueId": submitted["queueId"]}}
    assert events[-1] == {"event": "done", "data": {}}
    chunks = [event["data"] for event in events if event["event"] == "chunk"]
    assert "".join(str(chunk["delta"]) for chunk in chunks).startswith('Simulated reply to: "Summarise our refund policy"')
    assert chunks[-1]["finishReason"] == "stop"

    def completed() -> str:
        item = team.client.get_queued(submitted["queueId"])
        assert item["status"] == "completed" and item["result"] is not None
        assert item["result"]["content"] is not None
        return item["jobId"]

    job_id = eventually(completed)
    assert team.client.get_job(job_id)["status"] == "completed"


def test_cancel_a_running_queued_call(new_team: NewTeam) -> None:
    team = new_team(3)
    submitted = team.client.submit(MESSAGES, team.group)
    assert team.client.cancel_queue(submitted["queueId"]) == {"queueId": submitted["queueId"], "status": "cancelled"}
    with team.client.stream_queue(submitted["queueId"]) as stream:
        names = [event["event"] for event in stream]
    assert names[0] == "start" and names[-1] == "done"
    item = team.client.get_queued(submitted["queueId"])
    assert item["status"] == "cancelled"
    eventually(lambda: _assert_status(team.client.get_job(item["jobId"])["status"], "cancelled"))
    with pytest.raises(NotFoundError):
        team.client.get_queued("q_000000000000000000000")


def _assert_status(actual: str, expected: str) -> None:
    assert actual == expected
