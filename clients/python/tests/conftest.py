"""A real creditgate for the test session: `node --import tsx src/main.ts` from the repository, on a free port,
with the built-in simulated upstream (LLM_BASE_URL unset), a known MASTER_KEY, and DATABASE_URL from the
environment or else the embedded PostgreSQL in a temporary DATA_DIR."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import httpx
import pytest

from creditgate import AdminClient, Client

REPO = Path(os.environ.get("CREDITGATE_REPO", Path(__file__).resolve().parents[3]))
MASTER_KEY = "mk-python-client-tests-" + secrets.token_hex(8)
START_TIMEOUT_S = 120


@dataclass(frozen=True)
class Server:
    url: str
    master_key: str


@dataclass(frozen=True)
class TeamSetup:
    team_id: str
    key: str
    group: str
    client: Client


NewTeam = Callable[..., TeamSetup]
T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 10.0) -> T:
    """The first result of `check` that raises no AssertionError, retried for up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    data_dir = tempfile.mkdtemp(prefix="creditgate-python-tests-")
    port = _free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "MASTER_KEY": MASTER_KEY,
        # Set empty rather than removed, so a developer's .env cannot bring a real upstream in.
        "LLM_BASE_URL": "",
        "DATA_DIR": data_dir,
        "LOG_LEVEL": os.environ.get("CREDITGATE_LOG_LEVEL", "warn"),
    }
    log = open(Path(data_dir) / "server.log", "w+b")
    process = subprocess.Popen(["node", "--import", "tsx", "src/main.ts"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"creditgate exited with {process.returncode}:\n{log.read().decode(errors='replace')}")
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"creditgate did not become ready within {START_TIMEOUT_S} s")
            time.sleep(0.2)
        yield Server(url, MASTER_KEY)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def admin(server: Server) -> Iterator[AdminClient]:
    with AdminClient(server.url, server.master_key) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture
def new_team(server: Server, admin: AdminClient) -> Iterator[NewTeam]:
    """A factory: an organization, a model group of the simulated model and a team with `credits`."""
    clients: list[Client] = []

    def make(credits: int = 10, **settings: object) -> TeamSetup:
        organization = admin.organizations.create(unique("org"), "Python client tests")
        group = admin.model_groups.create(unique("group"), [{"model_name": "sim-small", "priority": 0}])
        team = admin.teams.create(
            organization["organization_id"],
            unique("team"),
            model_groups=[group["group_name"]],
            credits_allocated=credits,
            **settings,
        )
        client = Client(server.url, team["virtual_key"])
        clients.append(client)
        return TeamSetup(team["team_id"], team["virtual_key"], group["group_name"], client)

    yield make
    for client in clients:
        client.close()
