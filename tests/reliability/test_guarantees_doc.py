"""``docs/reliability.md`` lists each guarantee next to the test that proves it: keep the two in step."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent.parent / "docs" / "reliability.md"


def test_every_guarantee_has_its_test_and_every_test_is_listed() -> None:
    listed = re.findall(r"`(test_\w+\.py)::(test_\w+)`", DOC.read_text(encoding="utf-8"))
    dupes = [name for name, n in Counter(listed).items() if n > 1]
    assert not dupes, f"listed more than once in {DOC.name}: {dupes}"
    tests = {
        (path.name, node.name)
        for path in sorted(HERE.glob("test_*.py"))
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
    }
    assert not tests - set(listed), f"tests with no guarantee in {DOC.name}: {sorted(tests - set(listed))}"
    assert not set(listed) - tests, f"guarantees whose test does not exist: {sorted(set(listed) - tests)}"
