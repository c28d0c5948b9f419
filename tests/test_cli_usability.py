"""A new user's first hour with the command line, as real subprocesses started from a shell.

Shell-safe task names, progress lines when stderr is a pipe, lookups that never create a database or a
collection, each skipped file reported once, and the one reranker option name.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

TESTS_DIR = Path(__file__).resolve().parent
TOY = "reliability.toy_plugin:toy"


def mmembed_exe() -> str:
    exe = Path(sys.executable).with_name("mmembed")
    if not exe.is_file():
        pytest.fail(f"the mmembed console script is not installed next to {sys.executable}")
    return str(exe)


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("MMEMBED_")}
    out["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), out.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out.update(extra)
    return out


def shell(command: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` through bash, as a user types it (stderr is a pipe, not a terminal)."""
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env(**extra), capture_output=True, text=True,
                          timeout=240, stdin=subprocess.DEVNULL)


def in_process(args: list[str]):  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from mmembed.cli import app

    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """A folder of 30 captioned images (one unreadable) indexed into ``db`` with the toy encoder."""
    root = tmp_path_factory.mktemp("cli")
    folder = root / "pictures"
    folder.mkdir()
    for i in range(30):
        Image.new("RGB", (16, 16), (8 * i, 255 - 8 * i, 100)).save(folder / f"img-{i:02d}.png")
        (folder / f"img-{i:02d}.txt").write_text(f"a red car number {i}" if i % 2 else f"a green tree {i}")
    (folder / "broken.png").write_bytes(b"not a png at all")
    db = root / "db"
    res = shell(f"{mmembed_exe()} index {shlex.quote(str(folder))} --db {shlex.quote(str(db))} -e {TOY} -b 2",
                cwd=root, MMEMBED_PROGRESS_INTERVAL="0")
    assert res.returncode == 0, res.stderr
    return root, db, res


def test_index_prints_progress_lines_when_stderr_is_a_pipe(indexed: tuple) -> None:
    res = indexed[2]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("indexing:")]
    pattern = re.compile(r"^indexing: (\d+)/31 docs \((\d+)%\), [\d.e+]+ docs/s, (eta \S+|done in \S+)$")
    assert lines, res.stderr
    for line in lines:
        assert pattern.match(line), line
    counts = [int(pattern.match(ln).group(1)) for ln in lines]  # type: ignore[union-attr]
    assert counts == sorted(counts) and counts[-1] == 31
    assert "eta" in lines[0] and lines[-1].endswith(tuple("0123456789s")) and "done in" in lines[-1]
    assert "\r" not in res.stderr  # whole lines, not a terminal bar written into a log


def test_index_reports_each_skipped_file_once(indexed: tuple) -> None:
    res = indexed[2]
    assert "30 added, 0 already indexed, 1 skipped" in res.stdout
    lines = [ln for ln in res.stderr.splitlines() if "broken.png" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"  skipped {indexed[0] / 'pictures' / 'broken.png'}: image"), \
        res.stderr
    assert "document #" not in lines[0]  # the store's position in its chunk would point at the wrong file


def test_shell_safe_task_alias_from_a_shell(indexed: tuple) -> None:
    root, db, _ = indexed
    work = root / "alias"
    work.mkdir()
    res = shell(f"{mmembed_exe()} search 'a red car' --task text-to-image -k 3 --db {shlex.quote(str(db))} "
                f"-e {TOY}", cwd=work)
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.strip().splitlines()) == 3 and "red car" in res.stdout
    assert list(work.iterdir()) == []  # nothing written beside the user
    # the canonical name works quoted, and gives the same ranking
    quoted = shell(f"{mmembed_exe()} search 'a red car' --task 'text->image' -k 3 --db {shlex.quote(str(db))} "
                   f"-e {TOY}", cwd=work)
    assert quoted.returncode == 0 and quoted.stdout == res.stdout


def test_unquoted_arrow_is_explained_with_the_safe_form(indexed: tuple) -> None:
    root, db, _ = indexed
    work = root / "arrow"
    work.mkdir()
    res = shell(f"{mmembed_exe()} search 'a red car' --task text->image --db {shlex.quote(str(db))} -e {TOY}",
                cwd=work)
    assert res.returncode == 2
    assert (work / "image").exists()  # what the shell did with '>image'
    assert "unknown task 'text-'" in res.stderr and "text-to-image" in res.stderr
    assert "redirects output to a file" in res.stderr


def test_tasks_and_help_show_the_safe_names() -> None:
    from typer.testing import CliRunner

    from mmembed.cli import app

    listed = CliRunner().invoke(app, ["tasks"])
    assert listed.exit_code == 0
    for alias in ("text-to-image", "image-to-text", "image+text-to-image", "question-to-passage",
                  "mbeir:mscoco:text-to-image"):
        assert re.search(rf"^{re.escape(alias)}\s", listed.stdout, re.M), alias
    assert "->" not in listed.stdout.split("\n\n")[0]
    helped = CliRunner().invoke(app, ["search", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1",
                                                               "TERM": "dumb"})
    assert "text-to-image" in helped.stdout


def test_search_and_info_never_create_a_database(indexed: tuple) -> None:
    root, _, _ = indexed
    missing = root / "no-such-db"
    res = shell(f"{mmembed_exe()} search 'a car' --db {shlex.quote(str(missing))} -e {TOY}", cwd=root)
    assert res.returncode == 2, res.stderr
    assert "does not exist" in res.stderr and "no-such-db" in res.stderr
    info = in_process(["info", "--db", str(missing), "-e", TOY])
    assert info.exit_code == 2 and "does not exist" in info.stderr and "no-such-db" in info.stderr
    assert not missing.exists()


def test_a_mistyped_collection_is_listed_not_created(indexed: tuple) -> None:
    from mmembed.chroma_client import collection_names, connect

    root, db, _ = indexed
    before = collection_names(connect(db, None, create=False))
    res = shell(f"{mmembed_exe()} search 'a car' -c mmembd --db {shlex.quote(str(db))} -e {TOY}", cwd=root)
    info = in_process(["info", "-c", "mmembd", "--db", str(db), "-e", TOY])
    for code, err in ((res.returncode, res.stderr), (info.exit_code, info.stderr)):
        assert code == 2, err
        assert "collection 'mmembd' does not exist" in err
        assert "existing collections: mmembed" in err
    assert in_process(["info", "--db", str(db), "-e", TOY]).exit_code == 0
    after = collection_names(connect(db, None, create=False))
    assert after == before == ["mmembed"]


def test_reranker_option_name_and_the_deprecated_one(indexed: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    from mmembed.rerankers import registry
    from test_pipeline import WordReranker

    _, db, _ = indexed
    reranker = WordReranker("number 7")
    monkeypatch.setitem(registry._NAMED, "word-test", lambda name, **kw: reranker)
    base = ["search", "a red car", "-k", "2", "--fetch-k", "30", "--db", str(db), "-e", TOY, "--json"]
    new = in_process([*base, "--reranker", "word-test"])
    assert new.exit_code == 0, new.output
    assert "deprecated" not in new.stderr
    assert '"rerank_score": 1.0' in new.stdout and "number 7" in new.stdout.split("}")[0]
    old = in_process([*base, "--rerank", "word-test"])
    assert old.exit_code == 0, old.output
    assert "--rerank is deprecated; use --reranker" in old.stderr
    assert old.stdout == new.stdout and sum(reranker.seen) == 60  # both runs reranked the 30 candidates
    clash = in_process([*base, "--reranker", "word-test", "--rerank", "default"])
    assert clash.exit_code == 2 and "disagree" in clash.stderr
