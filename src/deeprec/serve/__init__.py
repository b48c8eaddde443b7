"""The HTTP service: a FastAPI app over a loaded model, served by uvicorn.

`create_app(model, run_info)` builds the app (no global state, so tests can make many);
`serve(run_dir, host, port)` loads RUN/best and runs it.
"""

from __future__ import annotations

from deeprec.serve.app import Limits, create_app
from deeprec.serve.runner import run_info, serve

__all__ = ["Limits", "create_app", "run_info", "serve"]
