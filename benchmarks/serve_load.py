"""Bounded HTTP load on loopback against a DeepRec trained on the ML-1M subset.

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python benchmarks/serve_load.py \
        --requests 5000 --concurrency 16 --out docs/results/serve_load.md

Trains (or reuses, --run) a model on /work/shared/data/ml-1m-users1-2999 (90/10 random split,
seed 0), starts the real server (`python -m deeprec serve`) in a subprocess, and drives it
with `--concurrency` closed-loop async clients (aiohttp, and httpx for comparison) on the same
machine: the load generator and the server share the CPU cores, so the numbers are a lower
bound for the server alone. The client's and the server's CPU time per request are recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DEEPREC_SHARED_DATA", "/work/shared/data"))
RATINGS = DATA / "ml-1m-users1-2999" / "ratings.dat.gz"


def load_ml1m_subset():
    import polars as pl

    text = gzip.decompress(RATINGS.read_bytes()).replace(b"::", b"\t")
    frame = pl.read_csv(
        text,
        separator="\t",
        has_header=False,
        new_columns=["user", "item", "rating", "timestamp"],
    )
    return frame.to_pandas()


def train_run(run: Path, epochs: int) -> dict:
    import torch

    from deeprec import DeepRec

    torch.set_num_threads(2)
    frame = load_ml1m_subset()
    rng = np.random.default_rng(0)
    test = rng.random(len(frame)) < 0.1
    train, held = frame[~test], frame[test]
    started = time.perf_counter()
    model = DeepRec(hidden=[256, 256], dropout=0.5, epochs=epochs, lr=0.001, seed=0).fit(train)
    seconds = time.perf_counter() - started
    model.save(run / "best", overwrite=True)
    summary = {
        "architecture": model.module_.architecture(),
        "epochs_run": epochs,
        "train_seconds": round(seconds, 1),
        "test": model.score(held),
        "ratings": len(frame),
        "users": int(frame["user"].nunique()),
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    (run / "dataset.json").write_text(
        json.dumps({"path": str(RATINGS), "meta": {"split": "random 90/10, seed 0"}})
    )
    return summary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def closed_loop(
    send: Callable[[dict], Awaitable[bool]], bodies: list[dict], concurrency: int
) -> tuple[list[float], int, float]:
    """`concurrency` workers, each sends its next body when its last one was answered."""
    latencies: list[float] = []
    errors = 0
    queue = iter(bodies)

    async def worker() -> None:
        nonlocal errors
        for body in queue:
            t0 = time.perf_counter()
            try:
                ok = await send(body)
            except Exception:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


async def drive_aiohttp(
    base: str, bodies: list[dict], concurrency: int
) -> tuple[list[float], int, float]:
    """The closed loop over aiohttp (light on CPU: not the bottleneck here)."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector) as session:

        async def send(body: dict) -> bool:
            async with session.post("/recommend", json=body) as response:
                got = await response.json()
                return response.status == 200 and len(got["items"]) == 10

        return await closed_loop(send, bodies, concurrency)


async def drive_httpx(
    base: str, bodies: list[dict], concurrency: int
) -> tuple[list[float], int, float]:
    """The same closed loop with httpx (the client the service tests use)."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def send(body: dict) -> bool:
            response = await client.post("/recommend", json=body)
            return response.status_code == 200 and len(response.json()["items"]) == 10

        return await closed_loop(send, bodies, concurrency)


CLIENTS = {"aiohttp": drive_aiohttp, "httpx": drive_httpx}


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), to split the cost per request."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summarise(
    latencies: list[float], errors: int, wall: float, client_cpu: float, server_cpu: float
) -> dict:
    ms = np.array(latencies) * 1000
    n = len(latencies)
    return {
        "client_cpu_ms_per_req": round(client_cpu / n * 1000, 3),
        "server_cpu_ms_per_req": round(server_cpu / n * 1000, 3),
        "requests": len(latencies),
        "errors": errors,
        "wall_s": round(wall, 2),
        "req_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("/tmp/deeprec-serve-load-run"))
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument(
        "--clients",
        default="aiohttp,httpx",
        help="Load generators to run, comma-separated (aiohttp, httpx).",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    if args.retrain or not (args.run / "best").exists():
        args.run.mkdir(parents=True, exist_ok=True)
        summary = train_run(args.run, args.epochs)
    else:
        summary = json.loads((args.run / "summary.json").read_text())
    print("model:", json.dumps(summary), file=sys.stderr)

    from deeprec.base import load_model

    model = load_model(args.run / "best")
    rng = random.Random(0)
    users = [int(u) for u in model.user_ids_]
    items = [int(i) for i in model.item_ids_]

    def new_user() -> dict:
        chosen = rng.sample(items, 20)
        return {"ratings": {str(i): float(rng.randint(1, 5)) for i in chosen}, "k": 10}

    scenarios = {
        "known user (/recommend {user, k=10})": [
            {"user": rng.choice(users), "k": 10} for _ in range(args.requests)
        ],
        "new user, 20 ratings (/recommend {ratings, k=10})": [
            new_user() for _ in range(args.requests)
        ],
    }

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    server = subprocess.Popen(
        [sys.executable, "-m", "deeprec", "serve", "--run", str(args.run), "--port", str(port)],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    results = {}
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        for client in args.clients.split(","):
            drive = CLIENTS[client]
            for name, bodies in scenarios.items():
                asyncio.run(drive(base, bodies[: args.warmup], args.concurrency))
                client_cpu, server_cpu = time.process_time(), process_cpu_seconds(server.pid)
                outcome = asyncio.run(drive(base, bodies, args.concurrency))
                client_cpu = time.process_time() - client_cpu
                server_cpu = process_cpu_seconds(server.pid) - server_cpu
                results[(client, name)] = summarise(*outcome, client_cpu, server_cpu)
                print(client, name, json.dumps(results[(client, name)]), file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=20)

    if args.out:
        write_report(args, summary, results)


def write_report(args: argparse.Namespace, summary: dict, results: dict) -> None:
    from _common import machine
    from deeprec.serve.runner import server_stack

    loop, http = server_stack()
    if "ratings" not in summary:  # a --run trained before the summary recorded its data
        frame = load_ml1m_subset()
        summary = {**summary, "ratings": len(frame), "users": int(frame["user"].nunique())}
    lines = [
        "# HTTP service under load (loopback)",
        "",
        "Command (from the repository root; `pip install -e '.[bench]'` adds aiohttp):",
        "",
        "```bash",
        "flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python "
        f"benchmarks/serve_load.py --requests {args.requests} --concurrency {args.concurrency} "
        f"--clients {args.clients} --out {args.out}",
        "```",
        "",
        f"- Model: DeepRec {summary['architecture']} trained {summary['epochs_run']} epochs on "
        f"the ML-1M subset ({RATINGS.parent.name}: {summary['users']:,} users, "
        f"{summary['ratings']:,} ratings), random 90/10 split seed 0; "
        f"held-out RMSE {summary['test']['rmse']:.4f} (this is a serving benchmark, not a "
        "tuned model).",
        f"- Server: `python -m deeprec serve` (uvicorn with loop={loop}, http={http}, one "
        "worker, torch threads = 1, concurrent requests share one forward pass).",
        f"- Load: {args.requests} requests per scenario after {args.warmup} warm-up requests, "
        f"{args.concurrency} concurrent workers in a closed loop (each sends its next request "
        "when its last one is answered), keep-alive connections, one client process on the "
        "same machine. Latency is measured by the client, from sending the request to "
        "having parsed the response.",
        f"- Machine: {machine()}; the load generator and the server share these cores.",
        "- CPU ms/req: the client's and the server's process CPU time over the run, divided "
        "by the requests.",
        "",
        "| client | scenario | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms "
        "| client CPU ms/req | server CPU ms/req |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (client, name), r in results.items():
        lines.append(
            f"| {client} | {name} | {r['requests']} | {r['errors']} | {r['req_per_s']} | "
            f"{r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['max_ms']} | "
            f"{r['client_cpu_ms_per_req']} | {r['server_cpu_ms_per_req']} |"
        )
    lines += [
        "",
        "Goal from issue 6: p99 < 25 ms and > 400 requests/s for /recommend with k=10.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
