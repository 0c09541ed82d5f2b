"""The admin API with the MASTER_KEY, and with an admin user's JWT."""

from __future__ import annotations

import secrets

import pytest

from conftest import NewTeam, Server, unique
from creditgate import AdminClient, AuthenticationError, Client, ConflictError, NotFoundError, PermissionDeniedError


def test_organizations_model_groups_and_teams(server: Server, admin: AdminClient) -> None:
    organization_id = unique("org")
    created = admin.organizations.create(organization_id, "Acme", metadata={"tier": "gold"})
    assert (created["organization_id"], created["team_count"], created["metadata"]) == (organization_id, 0, {"tier": "gold"})
    assert admin.organizations.get(organization_id) == created
    assert organization_id in [org["organization_id"] for org in admin.organizations.list(limit=200)["data"]]
    with pytest.raises(ConflictError):
        admin.organizations.create(organization_id, "again")

    group_name = unique("group")
    group = admin.model_groups.create(group_name, [{"model_name": "sim-large", "priority": 5}, {"model_name": "sim-small", "priority": 1}], display_name="Fast")
    assert [model["model_name"] for model in group["models"]] == ["sim-small", "sim-large"]
    assert group_name in [g["group_name"] for g in admin.model_groups.list()]
    updated = admin.model_groups.update(group_name, display_name="Faster")
    assert updated["display_name"] == "Faster"

    team = admin.teams.create(organization_id, unique("team"), team_alias="Writers", model_groups=[group_name], credits_allocated=3)
    assert team["virtual_key"].startswith("sk-") and team["credits"]["balance"] == 3
    as_team = Client(server.url, team["virtual_key"])
    assert as_team.get_balance(team["team_id"])["balance"] == 3
    assert admin.teams.suspend(team["team_id"])["status"] == "suspended"
    with pytest.raises((AuthenticationError, PermissionDeniedError)):
        as_team.get_balance(team["team_id"])
    assert admin.teams.resume(team["team_id"])["status"] == "active"
    as_team.create_and_call(team["team_id"], "counted", [{"role": "user", "content": "Hi"}])
    assert admin.teams.usage(team["team_id"])["totals"]["jobs"] == 1
    assert admin.organizations.usage(organization_id)["totals"]["jobs"] == 1
    as_team.close()

    spare = admin.model_groups.create(unique("group"), [{"model_name": "sim-small", "priority": 0}])
    admin.model_groups.delete(spare["group_name"])
    with pytest.raises(NotFoundError):
        admin.model_groups.get(spare["group_name"])


def test_keys_credits_budget_mode_and_prices(server: Server, admin: AdminClient, new_team: NewTeam) -> None:
    team = new_team(2)
    extra = admin.keys.create(team.team_id, name="ci")
    assert extra["virtual_key"].startswith("sk-") and extra["name"] == "ci"
    assert len(admin.keys.list(team.team_id)) == 2
    assert admin.keys.revoke(extra["key_id"])["status"] == "revoked"
    with pytest.raises(AuthenticationError):
        Client(server.url, extra["virtual_key"]).get_balance(team.team_id)

    added = admin.credits.add(team.team_id, 7, "top-up", idempotency_key="topup-" + secrets.token_hex(4))
    assert (added["balance"]["balance"], added["transaction"]["type"], added["transaction"]["amount"]) == (9, "grant", 7)
    key = "topup-" + secrets.token_hex(4)
    first = admin.credits.add(team.team_id, 1, "once", idempotency_key=key)
    again = admin.credits.add(team.team_id, 1, "once", idempotency_key=key)
    assert again["transaction"]["transaction_id"] == first["transaction"]["transaction_id"]
    assert admin.credits.balance(team.team_id)["balance"] == 10
    assert [e["type"] for e in admin.credits.transactions(team.team_id, limit=10)["data"]] == ["grant", "grant", "grant"]

    budget = admin.credits.set_budget_mode(team.team_id, "consumption_usd", credits_per_dollar=2.5)
    assert (budget["budget_mode"], budget["credits_per_dollar"]) == ("consumption_usd", "2.500000")

    model = unique("sim-priced")
    price = admin.model_prices.set(model, input_usd_per_million=0.25, output_usd_per_million="1.125")
    assert (price["input_usd_per_million"], price["output_usd_per_million"]) == ("0.250000", "1.125000")
    assert price in admin.model_prices.list()


def test_admin_users_log_in_and_their_jwt_works_as_the_api_key(server: Server, admin: AdminClient) -> None:
    assert admin.admin_users.me() == {"kind": "master_key", "admin_user": None}
    email = f"{unique('ops')}@example.com"
    user = admin.admin_users.create(email, "correct horse battery")
    anonymous = AdminClient(server.url)
    with pytest.raises(AuthenticationError):
        anonymous.admin_users.login(email, "wrong password!")
    login = anonymous.admin_users.login(email.upper(), "correct horse battery")
    assert login["token_type"] == "Bearer"
    with AdminClient(server.url, login["access_token"]) as as_user:
        me = as_user.admin_users.me()
        assert me["admin_user"] is not None and me["admin_user"]["admin_user_id"] == user["admin_user_id"]
        assert as_user.organizations.create(unique("org"), "By JWT")["name"] == "By JWT"
