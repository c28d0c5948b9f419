"""Progress for long work, on a terminal and off it.

On a terminal, a tqdm bar. When stderr is not a terminal (a log file, CI, ``nohup``, a pipe), tqdm's bar
would either be switched off (silence for the whole run) or written as one ever-growing line of carriage
returns; instead :class:`LogProgress` prints a plain line every ``MMEMBED_PROGRESS_INTERVAL`` seconds
(default 30), such as ``indexing: 1200/5000 docs (24%), 35 docs/s, eta 1m48s``, and a last line when the
work ends. Work shorter than the interval prints nothing. Indexing, encoding, evaluation and training use
:func:`progress`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, TextIO

#: seconds between two progress lines when stderr is not a terminal
DEFAULT_INTERVAL = 30.0
INTERVAL_ENV = "MMEMBED_PROGRESS_INTERVAL"


def _interval() -> float:
    raw = os.environ.get(INTERVAL_ENV)
    if raw is None:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_INTERVAL
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL


def format_duration(seconds: float) -> str:
    """``108`` -> ``1m48s``; ``3725`` -> ``1h02m``; ``4.2`` -> ``4s``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _plural(unit: str) -> str:
    return unit[:-1] + "ies" if unit.endswith("y") and unit[-2:-1] not in "aeiou" else unit + "s"


class LogProgress:
    """A tqdm stand-in for non-terminal stderr: one complete line per ``interval`` seconds, then a final one.

    Supports what mmembed's loops use of tqdm: ``update(n)``, ``close()`` and the context manager.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "item", *, interval: float | None = None,
                 file: TextIO | None = None, clock: Any = time.monotonic, initial: int = 0) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = self._initial = initial  # work done before (a resumed run): counted, not in the rate
        self.interval = _interval() if interval is None else interval
        self._file = file
        self._clock = clock
        self._start = clock()
        self._last = self._start
        self._printed = False
        self._closed = False
        self.postfix = ""

    @property
    def file(self) -> TextIO:
        return self._file if self._file is not None else sys.stderr

    def line(self, *, final: bool = False) -> str:
        elapsed = max(self._clock() - self._start, 1e-9)
        rate = (self.n - self._initial) / elapsed
        units = _plural(self.unit)
        text = f"{self.desc}: {self.n}"
        if self.total:
            text += f"/{self.total} {units} ({100 * self.n / self.total:.0f}%)"
        else:
            text += f" {units}"
        text += f", {rate:.3g} {units}/s" if rate >= 0.01 else ""
        text += f", {self.postfix}" if self.postfix else ""
        if final:
            return text + f", done in {format_duration(elapsed)}"
        if self.total and rate > 0:
            text += f", eta {format_duration((self.total - self.n) / rate)}"
        return text

    def set_postfix(self, **values: Any) -> None:
        """Like tqdm's: ``loss=0.412`` is shown in the next line."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _emit(self, text: str) -> None:
        try:
            print(text, file=self.file, flush=True)
        except (OSError, ValueError):  # a closed pipe must not stop the work
            pass
        self._printed = True

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        if self.total and self.n >= self.total:
            return  # the final line, at close(), says it
        if now - self._last >= self.interval:
            self._last = now
            self._emit(self.line())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._printed or self._clock() - self._start >= self.interval:  # short work stays silent
            self._emit(self.line(final=True))

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _NoProgress:
    def __init__(self, total: int | None = None) -> None:
        self.total = total
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_NoProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress(total: int | None, desc: str, unit: str = "item", *, show: bool | None = None,
             min_total: int = 0, leave: bool = True, initial: int = 0) -> Any:
    """A progress reporter for ``total`` units of work.

    ``show=False``: none. On a terminal, a tqdm bar (with ``show=None`` only when ``total > min_total``). Off
    a terminal (unless ``show=False``), a :class:`LogProgress` that prints a line every interval seconds.
    """
    if show is False:
        return _NoProgress(total)
    if _stderr_is_terminal():
        if show is None and total is not None and total <= min_total:
            return _NoProgress(total)
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=leave, initial=initial)
    return LogProgress(total, desc, unit, initial=initial)


__all__ = ["LogProgress", "format_duration", "progress"]
