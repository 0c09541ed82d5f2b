"""The sync modules (_client.py, _streaming.py) are generated from the async ones by scripts/generate_sync.py: the
committed files must be exactly what the script writes, so that a change made to one side only cannot pass."""

from __future__ import annotations

import difflib

import pytest

import generate_sync
from generate_sync import TARGETS, GenerateError, Target


@pytest.mark.parametrize("target", TARGETS, ids=[target.target for target in TARGETS])
def test_the_sync_module_is_generated_from_its_async_source(target: Target) -> None:
    expected = generate_sync.generate(target)
    committed = (generate_sync.PACKAGE / target.target).read_bytes().decode("utf-8")
    if committed != expected:
        diff = difflib.unified_diff(committed.splitlines(), expected.splitlines(), target.target, f"generated from {target.source}", lineterm="", n=1)
        pytest.fail(
            f"src/creditgate/{target.target} is not what src/creditgate/{target.source} gives. Change {target.source} "
            f"(never {target.target}), then run `{generate_sync.COMMAND}`.\n" + "\n".join(list(diff)[:60]),
            pytrace=False,
        )


SNIPPET = Target("snippet.py", "snippet_sync.py", "The sync snippet.")


def _unasync(body: str) -> str:
    text = generate_sync.unasync(f'"""The async snippet."""\n\n{body}', SNIPPET)
    return text.split('"""The sync snippet."""\n\n', 1)[1]


def test_awaits_lose_the_parentheses_only_they_needed() -> None:
    source = (
        "import asyncio\n"
        "import time\n\n\n"
        "async def f(t: Any) -> Any:\n"
        '    """Call it with `await f(t)`; `AsyncClient.aclose()` ends it."""\n'
        "    await asyncio.sleep(0.1)\n"
        '    a = (await t.json("GET", "/x"))["data"]\n'
        "    b = g(await t.aread())\n"
        "    c = (await t.x) + 1\n"
        "    d = (await t.a + 1) * 2\n"
        "    async with t:  # `async with` the AsyncClient\n"
        "        return (a, b, c, d)\n"
    )
    assert _unasync(source) == (
        "import time\n\n\n"
        "def f(t: Any) -> Any:\n"
        '    """Call it with `f(t)`; `Client.close()` ends it."""\n'
        "    time.sleep(0.1)\n"
        '    a = t.json("GET", "/x")["data"]\n'
        "    b = g(t.read())\n"
        "    c = t.x + 1\n"
        "    d = (t.a + 1) * 2\n"
        "    with t:  # `with` the Client\n"
        "        return (a, b, c, d)\n"
    )


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ("async def f(t: Any) -> None:\n    await t.aiter_bytes()\n", "`aiter_bytes` has no sync name"),
        ("class AsyncThing:\n    pass\n", "`AsyncThing` has no sync name"),
        ("import asyncio\n\n\nasync def f() -> None:\n    await asyncio.gather()\n", "this use of asyncio has no sync twin"),
        ('MESSAGE = "call aclose() first"\n', "a string that is not a docstring mentions an async name"),
    ],
)
def test_what_has_no_sync_twin_stops_the_generation(body: str, complaint: str) -> None:
    with pytest.raises(GenerateError, match=complaint):
        _unasync(body)
