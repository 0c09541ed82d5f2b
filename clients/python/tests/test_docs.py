"""The Python code of the docs runs: each ```python block of README.md and docs/*.md is run as its own program
against the test session's server, with a fresh team. A block marked `norun` (another package's example, a
before-and-after snippet) is only parsed."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, NewTeam, Server

FENCE = re.compile(r"^```python(?P<flags>[^\n]*)\n(?P<code>.*?)^```$", re.M | re.S)


def _blocks() -> list[tuple[str, int, bool, str]]:
    files = [REPO / "README.md", REPO / "clients/python/README.md", *sorted((REPO / "docs").rglob("*.md"))]
    found = []
    for file in files:
        text = file.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((str(file.relative_to(REPO)), line, "norun" not in match["flags"].split(), match["code"]))
    return found


BLOCKS = _blocks()


def test_the_docs_have_python_examples() -> None:
    assert sum(1 for _, _, runnable, _ in BLOCKS if runnable) >= 8


@pytest.mark.parametrize(("file", "line", "runnable", "code"), BLOCKS, ids=[f"{file}:{line}" for file, line, _, _ in BLOCKS])
def test_python_block(file: str, line: int, runnable: bool, code: str, server: Server, new_team: NewTeam, tmp_path: Path) -> None:
    ast.parse(code, filename=f"{file}:{line}")
    if not runnable:
        return
    team = new_team(100)
    program = tmp_path / "example.py"
    program.write_text(code)
    env = {
        **os.environ,
        "CREDITGATE_URL": server.url,
        "CREDITGATE_KEY": team.key,
        "CREDITGATE_TEAM_ID": team.team_id,
        "CREDITGATE_MODEL": team.group,
        "CREDITGATE_MASTER_KEY": server.master_key,
    }
    result = subprocess.run([sys.executable, str(program)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{file}:{line}\n{result.stdout}\n{result.stderr}"
