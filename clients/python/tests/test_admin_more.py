"""The rest of the admin API: team lists, edits and archiving, key edits, every team's jobs, deductions, the ledger
as CSV and the balance history, reports, outgoing webhooks (against a receiver in this process) and Stripe
billing, each checked by its effect on the server."""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import hmac
import io
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from conftest import NewTeam, Server, eventually, unique
from creditgate import AdminClient, AsyncAdminClient, AuthenticationError, ConflictError, NotFoundError

CSV_HEADER = ["transaction_id", "created_at", "type", "amount", "held_change", "balance_after", "held_after", "job_id", "reason", "actor"]


def test_teams_list_update_and_delete_and_an_organizations_teams(server: Server, admin: AdminClient, new_team: NewTeam) -> None:
    team = new_team(4, team_alias="Support desk")
    organization_id = admin.teams.get(team.team_id)["organization_id"]

    listed = admin.teams.list(q=team.team_id)["data"]
    assert [(t["team_id"], t["team_alias"], t["balance"], t["status"]) for t in listed] == [(team.team_id, "Support desk", 4, "active")]
    by_organization = admin.organizations.teams(organization_id)
    assert ([t["team_id"] for t in by_organization["data"]], by_organization["has_more"]) == ([team.team_id], False)

    updated = admin.teams.update(team.team_id, team_alias="Escalations", credits_per_job=2, metadata={"tier": "gold"})
    assert (updated["team_alias"], updated["credits_per_job"], updated["metadata"]) == ("Escalations", 2, {"tier": "gold"})
    assert admin.teams.get(team.team_id)["team_alias"] == "Escalations"
    assert admin.teams.update(team.team_id, team_alias=None)["team_alias"] is None
    # credits_per_job 2: a job now holds two credits.
    assert team.client.create_job(team.team_id, "priced")["credits_reserved"] == 2

    with pytest.raises(ConflictError) as refused:
        admin.teams.delete(team.team_id)
    assert refused.value.code in ("team_has_open_jobs", "team_has_credits")
    open_job = admin.teams.jobs(team.team_id, status="pending")["data"][0]
    admin.jobs.cancel(open_job["job_id"])
    admin.credits.deduct(team.team_id, 4, "closing the account")
    archived = admin.teams.delete(team.team_id)
    assert archived["status"] == "archived"
    assert admin.teams.list(q=team.team_id)["data"] == []
    assert [t["team_id"] for t in admin.teams.list(q=team.team_id, status="archived")["data"]] == [team.team_id]
    with pytest.raises(AuthenticationError):
        team.client.get_balance(team.team_id)


def test_teams_list_sorts_and_pages(admin: AdminClient, new_team: NewTeam) -> None:
    alias = unique("paged")
    teams = [new_team(credits, team_alias=alias).team_id for credits in (3, 1, 2)]
    first = admin.teams.list(q=alias, sort="balance", order="desc", limit=2)
    assert ([t["team_id"] for t in first["data"]], first["has_more"]) == ([teams[0], teams[2]], True)
    assert first["next_cursor"] is not None
    rest = admin.teams.list(q=alias, sort="balance", order="desc", limit=2, cursor=first["next_cursor"])
    assert ([t["team_id"] for t in rest["data"]], rest["has_more"]) == ([teams[1]], False)


def test_keys_update_renames_and_limits_a_key(admin: AdminClient, new_team: NewTeam) -> None:
    team = new_team(2)
    key = admin.keys.create(team.team_id, name="ci")
    limits = {"requests_per_minute": 5, "tokens_per_minute": None, "max_concurrent_jobs": 2, "max_concurrent_calls": None}
    updated = admin.keys.update(key["key_id"], name="nightly", limits=limits)
    assert (updated["name"], updated["limits"]) == ("nightly", limits)
    listed = {k["key_id"]: k for k in admin.keys.list(team.team_id)}
    assert (listed[key["key_id"]]["name"], listed[key["key_id"]]["limits"]["requests_per_minute"]) == ("nightly", 5)
    assert admin.keys.update(key["key_id"], name=None)["name"] is None


def test_jobs_list_get_update_metadata_and_cancel(admin: AdminClient, new_team: NewTeam) -> None:
    team = new_team(5)
    job_type = unique("triage")
    done = team.client.create_and_call(team.team_id, job_type, [{"role": "user", "content": "Hi"}])
    waiting = team.client.create_job(team.team_id, job_type, user_id="u-7", metadata={"ticket": "T-9", "keep": True})

    listed = admin.jobs.list(job_type=job_type)
    assert [(j["job_id"], j["status"]) for j in listed["data"]] == [(waiting["job_id"], "pending"), (done["job_id"], "completed")]
    completed = listed["data"][1]
    assert (completed["team_id"], completed["total_calls"], completed["credits_charged"]) == (team.team_id, 1, 1)
    assert [j["job_id"] for j in admin.jobs.list(team_id=team.team_id, status="completed")["data"]] == [done["job_id"]]
    assert [j["job_id"] for j in admin.teams.jobs(team.team_id, job_type=job_type, limit=1)["data"]] == [waiting["job_id"]]

    job = admin.jobs.get(done["job_id"])
    assert job["calls"][0]["response_content"] == done["response"]["choices"][0]["message"]["content"]

    updated = admin.jobs.update_metadata(waiting["job_id"], {"ticket": None, "rating": 5})
    assert updated["metadata"] == {"keep": True, "rating": 5}
    assert team.client.get_job(waiting["job_id"])["metadata"] == {"keep": True, "rating": 5}

    cancelled = admin.jobs.cancel(waiting["job_id"])
    assert (cancelled["status"], cancelled["credits_charged"], cancelled["credits_remaining"]) == ("cancelled", 0, 4)
    balance = admin.credits.balance(team.team_id)
    assert (balance["balance"], balance["held"]) == (4, 0)


def test_deduct_lowers_the_balance_once_and_never_below_what_is_available(admin: AdminClient, new_team: NewTeam) -> None:
    team = new_team(10)
    key = "deduct-" + secrets.token_hex(4)
    first = admin.credits.deduct(team.team_id, 3, "duplicate invoice", idempotency_key=key)
    again = admin.credits.deduct(team.team_id, 3, "duplicate invoice", idempotency_key=key)
    assert again["transaction"]["transaction_id"] == first["transaction"]["transaction_id"]
    assert (first["transaction"]["type"], first["transaction"]["amount"], first["balance"]["balance"]) == ("adjustment", -3, 7)
    assert admin.credits.balance(team.team_id)["balance"] == 7

    team.client.create_job(team.team_id, "holds-one")
    with pytest.raises(ConflictError) as refused:
        admin.credits.deduct(team.team_id, 7, "too much")
    assert refused.value.code == "exceeds_available_credits"
    assert admin.credits.balance(team.team_id)["balance"] == 7
    assert [e["reason"] for e in admin.credits.transactions(team.team_id, type="adjustment")["data"]] == ["duplicate invoice"]


def test_export_csv_holds_the_ledger_and_balance_history_its_days(admin: AdminClient, new_team: NewTeam) -> None:
    team = new_team(10)
    admin.credits.add(team.team_id, 5, "top-up, with a comma")
    admin.credits.deduct(team.team_id, 2, 'a "quoted" correction')
    ledger = admin.credits.transactions(team.team_id)["data"]

    text = admin.credits.export_csv(team.team_id)
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == CSV_HEADER
    rows = list(reader)
    # Oldest first: the reverse of the ledger's pages.
    assert [row["transaction_id"] for row in rows] == [entry["transaction_id"] for entry in reversed(ledger)]
    assert [(row["type"], float(row["amount"]), float(row["balance_after"]), row["reason"]) for row in rows[1:]] == [
        ("grant", 5, 15, "top-up, with a comma"),
        ("adjustment", -2, 13, 'a "quoted" correction'),
    ]
    adjustments = list(csv.DictReader(io.StringIO(admin.credits.export_csv(team.team_id, type="adjustment"))))
    assert [row["reason"] for row in adjustments] == ['a "quoted" correction']

    history = admin.credits.balance_history(team.team_id)
    today = history["points"][-1]
    assert (history["team_id"], today["balance"], today["held"], today["credits_in"], today["credits_out"]) == (team.team_id, 13, 0, 15, 2)
    assert all(point["balance"] == 0 for point in history["points"][:-1])


def test_admin_users_exists_needs_no_credential(server: Server, admin: AdminClient) -> None:
    admin.admin_users.create(f"{unique('first')}@example.com", "correct horse battery")
    with AdminClient(server.url) as anonymous:
        assert anonymous.admin_users.exists() == {"admin_users_exist": True}


def test_reports_count_a_teams_usage(admin: AdminClient, new_team: NewTeam) -> None:
    team = new_team(2)
    team.client.create_and_call(team.team_id, "reported", [{"role": "user", "content": "Hi"}])

    def counted() -> None:
        overview = admin.reports.overview()
        assert overview["windows"]["today"]["jobs"] >= 1 and overview["credits"]["outstanding"] >= 1
        series = admin.reports.timeseries(granularity="hour", team_id=team.team_id)
        assert series["granularity"] == "hour"
        assert sum(point["jobs"] for point in series["points"]) == 1
        assert sum(point["credits_charged"] for point in series["points"]) == 1
        rows = {row["key"]: row for row in admin.reports.breakdown(by="team", limit=1000)["rows"]}
        assert (rows[team.team_id]["jobs"], rows[team.team_id]["calls"], rows[team.team_id]["credits_charged"]) == (1, 1, 1)
        assert "sim-small" in [row["key"] for row in admin.reports.breakdown(by="model")["rows"]]

    eventually(counted)
    low = admin.reports.low_credits(threshold=2, limit=200)
    assert low["threshold"] == 2
    assert [(t["team_id"], t["credits_remaining"]) for t in low["data"] if t["team_id"] == team.team_id] == [(team.team_id, 1)]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)

    def of_team(self, team_id: str) -> list[Received]:
        return [r for r in list(self.requests) if json.loads(r.body)["data"].get("team_id") == team_id]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP endpoint in this process that records what is POSTed to it and answers 204."""
    received: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(Received({name.lower(): value for name, value in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{http.server_address[1]}/hooks", received)
    finally:
        http.shutdown()
        http.server_close()


def _signed_by(secret: str, request: Received) -> bool:
    """Standard Webhooks: v1 = base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed with the secret's base64 part."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return expected in request.headers["webhook-signature"].split()


def test_webhook_endpoints_deliveries_and_replay(admin: AdminClient, new_team: NewTeam, receiver: Receiver) -> None:
    endpoint = admin.webhooks.create_endpoint(receiver.url, events=["credits.added"], description="ci receiver")
    try:
        assert endpoint["secret"].startswith("whsec_") and endpoint["events"] == ["credits.added"]
        listed = [e for e in admin.webhooks.list_endpoints() if e["endpoint_id"] == endpoint["endpoint_id"]]
        assert len(listed) == 1 and "secret" not in listed[0]
        assert listed[0] == {name: value for name, value in endpoint.items() if name != "secret"}

        team = new_team(1)
        admin.credits.add(team.team_id, 5, "webhook test")

        def delivered() -> None:
            deliveries = admin.webhooks.list_deliveries(endpoint["endpoint_id"], status="delivered")["data"]
            assert any(d["last_status_code"] == 204 for d in deliveries), deliveries
            assert len(receiver.of_team(team.team_id)) == 2, "the team's first grant and the top-up"

        eventually(delivered)
        events = [json.loads(r.body) for r in receiver.of_team(team.team_id)]
        assert {event["type"] for event in events} == {"credits.added"}
        assert sorted(event["data"]["transaction"]["amount"] for event in events) == [1, 5]
        assert all(_signed_by(endpoint["secret"], r) for r in receiver.of_team(team.team_id))

        top_up = next(r for r in receiver.of_team(team.team_id) if json.loads(r.body)["data"]["transaction"]["amount"] == 5)
        original = next(d for d in admin.webhooks.list_deliveries(endpoint["endpoint_id"])["data"] if d["event_id"] == top_up.headers["webhook-id"])
        replay = admin.webhooks.replay_delivery(original["delivery_id"])
        assert (replay["event_id"], replay["delivery_id"] != original["delivery_id"]) == (original["event_id"], True)
        eventually(lambda: _assert_count(receiver.of_team(team.team_id), 3))
        assert receiver.of_team(team.team_id)[-1].headers["webhook-id"] == original["event_id"]

        rotated = admin.webhooks.rotate_endpoint_secret(endpoint["endpoint_id"])
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != endpoint["secret"]
        admin.webhooks.replay_delivery(original["delivery_id"])
        eventually(lambda: _assert_count(receiver.of_team(team.team_id), 4))
        assert _signed_by(rotated["secret"], receiver.of_team(team.team_id)[-1])

        disabled = admin.webhooks.update_endpoint(endpoint["endpoint_id"], enabled=False, description=None, events=None)
        assert (disabled["enabled"], disabled["description"], disabled["events"]) == (False, None, None)
    finally:
        admin.webhooks.delete_endpoint(endpoint["endpoint_id"])
    assert endpoint["endpoint_id"] not in [e["endpoint_id"] for e in admin.webhooks.list_endpoints()]
    with pytest.raises(NotFoundError):
        admin.webhooks.list_deliveries(endpoint["endpoint_id"])


def _assert_count(items: list[Received], count: int) -> None:
    assert len(items) == count, len(items)


def test_billing_refills_are_requested_below_the_auto_refill_line_and_checkout_needs_stripe(admin: AdminClient, new_team: NewTeam) -> None:
    team = new_team(10, balance_alerts={"auto_refill": {"below_credits": 5, "refill_credits": 20}})
    assert admin.billing.refills(team.team_id)["data"] == []
    admin.credits.deduct(team.team_id, 6, "spent elsewhere")

    def requested() -> None:
        refills = admin.billing.refills(team.team_id)["data"]
        assert [(r["team_id"], r["credits"], r["status"]) for r in refills] == [(team.team_id, 20, "requested")]

    eventually(requested)
    # This server has no STRIPE_SECRET_KEY.
    with pytest.raises(ConflictError) as refused:
        admin.billing.checkout(team.team_id, "https://example.com/paid", "https://example.com/cancelled", credits=100)
    assert refused.value.code == "stripe_not_configured"


def test_async_admin_client_reaches_the_same_api(server: Server, new_team: NewTeam, receiver: Receiver) -> None:
    team = new_team(6, team_alias="Async desk")
    job_type = unique("async-listed")
    job = team.client.create_job(team.team_id, job_type)

    async def run() -> None:
        async with AsyncAdminClient(server.url, server.master_key) as admin:
            assert [t["team_alias"] for t in (await admin.teams.list(q=team.team_id))["data"]] == ["Async desk"]
            assert (await admin.teams.update(team.team_id, credits_per_job=3))["credits_per_job"] == 3
            assert [j["job_id"] for j in (await admin.jobs.list(job_type=job_type))["data"]] == [job["job_id"]]
            assert [j["job_id"] for j in (await admin.teams.jobs(team.team_id))["data"]] == [job["job_id"]]
            assert (await admin.jobs.update_metadata(job["job_id"], {"source": "async"}))["metadata"] == {"source": "async"}
            assert (await admin.jobs.cancel(job["job_id"]))["status"] == "cancelled"
            deducted = await admin.credits.deduct(team.team_id, 2, "async correction")
            assert deducted["balance"]["balance"] == 4
            rows = list(csv.DictReader(io.StringIO(await admin.credits.export_csv(team.team_id, type="adjustment"))))
            assert [(float(row["amount"]), row["reason"]) for row in rows] == [(-2, "async correction")]
            assert (await admin.credits.balance_history(team.team_id))["points"][-1]["balance"] == 4
            assert (await admin.reports.overview())["credits"]["teams"] >= 1
            assert (await admin.billing.refills(team.team_id))["data"] == []
            endpoint = await admin.webhooks.create_endpoint(receiver.url, events=["team.suspended"])
            listed = [e for e in await admin.webhooks.list_endpoints() if e["endpoint_id"] == endpoint["endpoint_id"]]
            assert len(listed) == 1 and "secret" not in listed[0]
            await admin.webhooks.delete_endpoint(endpoint["endpoint_id"])
            assert endpoint["endpoint_id"] not in [e["endpoint_id"] for e in await admin.webhooks.list_endpoints()]
            await admin.admin_users.create(f"{unique('async')}@example.com", "correct horse battery")
        async with AsyncAdminClient(server.url) as anonymous:
            assert await anonymous.admin_users.exists() == {"admin_users_exist": True}

    asyncio.run(run())
