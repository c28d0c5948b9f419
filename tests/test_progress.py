"""Long work reports progress in plain lines when stderr is not a terminal (a log, CI, a pipe)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ToyEncoder
from mmembed.progress import LogProgress, format_duration, progress

TESTS_DIR = Path(__file__).resolve().parent


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_every_interval_with_rate_percent_and_eta() -> None:
    clock, out = Clock(), io.StringIO()
    bar = LogProgress(5000, "indexing", "doc", interval=30, file=out, clock=clock)
    for _ in range(40):  # 40 updates of 30 docs, one second apart: a line at 30 s only
        clock.now += 1
        bar.update(30)
    assert out.getvalue() == "indexing: 900/5000 docs (18%), 30 docs/s, eta 2m17s\n"
    clock.now += 20
    bar.update(300)  # 60 s: 1500 docs
    assert out.getvalue().splitlines()[-1] == "indexing: 1500/5000 docs (30%), 25 docs/s, eta 2m20s"
    bar.close()
    assert out.getvalue().splitlines()[-1] == "indexing: 1500/5000 docs (30%), 25 docs/s, done in 1m00s"
    bar.close()
    assert len(out.getvalue().splitlines()) == 3


def test_short_work_prints_nothing() -> None:
    clock, out = Clock(), io.StringIO()
    with LogProgress(10, "encoding documents", "item", interval=30, file=out, clock=clock) as bar:
        for _ in range(10):
            clock.now += 0.5
            bar.update()
    assert out.getvalue() == ""


def test_durations() -> None:
    assert [format_duration(s) for s in (4.2, 59.6, 108, 3725, float("inf"))] == ["4s", "1m00s", "1m48s",
                                                                                    "1h02m", "?"]


def test_off_a_terminal_progress_is_lines_and_show_false_is_nothing(capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert not sys.stderr.isatty()  # pytest's capture: not a terminal
    monkeypatch.setenv("MMEMBED_PROGRESS_INTERVAL", "0")
    assert isinstance(progress(10, "x"), LogProgress)
    with progress(10, "x", show=False) as quiet:
        quiet.update(10)
    ToyEncoder().encode_documents([f"text {i}" for i in range(10)], batch_size=3)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[:3] == [ln for ln in lines[:3] if re.match(r"encoding documents: \d+/10 items \(\d+%\)", ln)]
    assert [int(re.match(r"encoding documents: (\d+)/", ln).group(1)) for ln in lines] == [3, 6, 9, 10]
    assert "done in" in lines[-1] and "x:" not in err


def test_eval_prints_progress_lines(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from mmembed.eval.datasets import EvalDataset, Pool, Subset
    from mmembed.eval.runner import evaluate

    monkeypatch.setenv("MMEMBED_PROGRESS_INTERVAL", "0")
    docs = [f"document about topic {i}" for i in range(12)]
    pool = Pool(key="p", items=docs, ids=[f"d{i}" for i in range(12)], texts=docs)
    subset = Subset("text->text", list(docs), [(i,) for i in range(12)], pool, "text->text")
    evaluate(EvalDataset("tiny", [subset]), ToyEncoder(), baselines=False, batch_size=4)
    err = capsys.readouterr().err
    assert re.search(r"^encoding documents: 12/12 items \(100%\), .*done in", err, re.M), err
    assert re.search(r"^tiny text->text: 12/12 queries \(100%\), .*done in", err, re.M), err


def test_encode_progress_reaches_a_pipe_in_a_subprocess() -> None:
    code = ("from conftest import ToyEncoder\n"
            "ToyEncoder().encode_queries([f'q {i}' for i in range(8)], task='text-to-text', batch_size=2)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=TESTS_DIR, capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "MMEMBED_PROGRESS_INTERVAL": "0",
                              "PYTHONPATH": str(TESTS_DIR)})
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert [ln.split(" (")[0] for ln in lines] == ["encoding queries: 2/8 items", "encoding queries: 4/8 items",
                                                   "encoding queries: 6/8 items", "encoding queries: 8/8 items"]


def test_training_postfix_and_resumed_start() -> None:
    clock, out = Clock(), io.StringIO()
    bar = LogProgress(100, "stage 1 epoch 1/2", "step", interval=10, file=out, clock=clock, initial=40)
    clock.now += 10  # resumed from a checkpoint at step 40: 10 steps in 10 s
    bar.set_postfix(loss="0.412")
    bar.update(10)
    assert out.getvalue() == "stage 1 epoch 1/2: 50/100 steps (50%), 1 steps/s, loss=0.412, eta 50s\n"
