"""The test suite cannot skip its way to green: checks on the helpers that decide a skip.

* A registry fetch that fails skips only on a developer's machine; with ``MMEMBED_REQUIRE_DATA=1`` (set by
  ``.ci/run``) it fails. No test handles ``DataFetchError`` with its own ``pytest.skip``.
* A skip condition never swallows an exception: only :class:`DataFetchError` becomes a skip.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from data_support import REQUIRE_DATA_ENV, fetch_or_skip, real_data
from mmembed.data.fetch import DataFetchError

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _offline() -> None:
    raise DataFetchError("fetching Debian package python3.11-doc failed: network unreachable")


def test_a_failed_fetch_skips_for_a_developer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_DATA_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="cannot fetch the FAQ: fetching .* network unreachable"):
        fetch_or_skip("the FAQ", _offline)


def test_a_failed_fetch_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_DATA_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"cannot fetch the FAQ: .*{REQUIRE_DATA_ENV}=1"):
        fetch_or_skip("the FAQ", _offline)
    assert fetch_or_skip("the FAQ", lambda: 42) == 42


def test_only_a_fetch_error_becomes_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_DATA_ENV, raising=False)
    with pytest.raises(KeyError, match="bug"):
        with real_data("the FAQ"):
            raise KeyError("bug")


def test_ci_requires_the_data() -> None:
    run = (ROOT / ".ci" / "run").read_text()
    assert f"export {REQUIRE_DATA_ENV}=1" in run
    assert run.index(f"export {REQUIRE_DATA_ENV}=1") < run.index("scripts/test.sh")


def _skips_in_handler(handler: ast.ExceptHandler) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "skip"
               for n in ast.walk(handler))


def test_no_test_skips_on_a_caught_exception_by_itself() -> None:
    """A ``pytest.skip`` inside an ``except`` clause is how a skip swallows a failure; the only one allowed is
    in data_support (a DataFetchError, and it fails in CI)."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.name == "data_support.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ExceptHandler) and _skips_in_handler(node):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"pytest.skip inside an except clause: {offenders}"
