"""``mmembed serve``: a search page and a REST API over mmembed collections (the ``serve`` extra).

    from mmembed.serve import create_app, ServeConfig
    app = create_app(mmembed.Store("db", collection="photos"))   # a FastAPI app; run it with uvicorn

Importing this package does not import FastAPI: the CLI registers ``mmembed serve`` even without the extra and
says what to install when it is missing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(name)
