"""Load a run directory's best model and serve it with uvicorn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def run_info(run: str | Path) -> dict[str, Any]:
    """What GET /model shows about a run: dataset, architecture, metrics (what exists)."""
    run = Path(run)
    info: dict[str, Any] = {"run": str(run)}
    for name, key in (("summary.json", "summary"), ("dataset.json", "dataset")):
        path = run / name
        if path.is_file():
            try:
                value = json.loads(path.read_text())
            except json.JSONDecodeError:
                continue
            if key == "dataset" and isinstance(value, dict):
                meta = value.get("meta", {})
                value = {"path": value.get("path"), **{k: meta[k] for k in list(meta)[:30]}}
            info[key] = value
    summary = info.get("summary") or {}
    if isinstance(summary, dict):
        info["metrics"] = {
            k: summary[k] for k in ("best_epoch", "best_valid_rmse", "test") if k in summary
        }
        if "architecture" in summary:
            info["architecture"] = summary["architecture"]
    return info


def load_run(run: str | Path) -> tuple[Any, dict[str, Any]]:
    from deeprec.runs.directory import load_run_model

    return load_run_model(run), run_info(run)


def serve(
    run: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    threads: int = 1,
    log_level: str = "warning",
) -> None:
    """Blocking: serve RUN/best until interrupted. One torch thread keeps latency steady."""
    import torch
    import uvicorn

    from deeprec.serve.app import create_app

    torch.set_num_threads(max(1, threads))
    model, info = load_run(run)
    loop, http = server_stack()
    info["server"] = {"loop": loop, "http": http}
    app = create_app(model, info)
    uvicorn.run(
        app, host=host, port=port, loop=loop, http=http, log_level=log_level, access_log=False
    )


def server_stack() -> tuple[str, str]:
    """uvicorn's fastest installed event loop and HTTP parser (uvloop, httptools).

    Both are dependencies; the fallbacks keep the service working where a wheel is missing.
    """
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http
