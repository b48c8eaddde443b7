"""One training epoch at Netflix scale (synthetic data), paper's Full architecture.

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src \
        MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824 python \
        benchmarks/netflix_scale_epoch.py --batches 60 --out docs/results/netflix_scale_epoch.json

(The MALLOC_* settings keep glibc from unmapping and page-faulting the 36 MB tensors every
step, which the library used to do itself: README, Speed. The report records them.)

480,189 users x 17,768 items, ~100M ratings generated in-process (vectorised NumPy: log-normal
ratings per user, Zipf-like item popularity, no duplicate (user, item) pairs). Model
n,512,512,1024,dp0.8,512,512,n, SELU, momentum SGD, batch 128, compute=fast; fp32 and bf16,
without and with one re-feed step. A full epoch is 3,752 batches: unless --batches 0, the
script times a fixed number of batches (round-robin in chunks across the four settings, so
load from other work hits all alike) and extrapolates; the output says which.

Batches are built as training builds them: on a prefetch thread where a core is free of
torch's threads or the step runs on a GPU, else in line (deeprec.data.batching.prefetch_depth).
On a GPU (--device cuda) the model and each batch live on the GPU, batches are still built on
the CPU, and --users N trains on the first N users of the same data (their
ratings are exactly those of the full set: generation draws every user's count first, then
users in order), which skips most of the several minutes of single-threaded generation; the
epoch is extrapolated from the per-batch time to the full 480,189 users.

Settings graph-{fp32,bf16}-refeed{0,1} (--device cuda) time the GPU-bound step the trainer
uses on CUDA (step/graph.py): the CSR data on the GPU, batches gathered and padded
there, one CUDA graph per size bucket. Each bucket is captured first (untimed, reported), then
--graph-epochs whole epochs over the --users subset are timed (>= 1,000 batches with
--users 160000 or more) and extrapolated to the full epoch; GPU busy comes from the
profiler over --profile-batches replays. fast-* settings in the same run are the per-batch
step (cuda_graphs: false), so `speedup_vs_per_batch` compares both on the same machine.
With --out the report is rewritten after every graph setting, so a run cut short by a
timeout keeps what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts
from _speed_common import emit_report, profile_steps
from deeprec.atomic import atomic_file
from deeprec.data.batching import epoch_order, iter_row_batches, prefetch, prefetch_depth
from deeprec.data.sparse import CSRMatrix
from deeprec.step.graph import GraphStep
from deeprec.train.config import TrainConfig
from deeprec.train.optim import build_optimizer
from deeprec.train.step import make_step
from deeprec.train.trainer import build_model

N_USERS, N_ITEMS, TARGET = 480_189, 17_768, 100_480_507


def synthetic_netflix(seed: int = 0, chunk: int = 40_000, users: int = N_USERS) -> CSRMatrix:
    """User x item CSR with Netflix's shape; generated in user chunks to bound memory.

    `users` < N_USERS keeps the first users only (whole chunks), with the same ratings."""
    rng = np.random.default_rng(seed)
    counts = rng.lognormal(mean=np.log(TARGET / N_USERS) - 0.5, sigma=1.0, size=N_USERS)
    counts = np.clip(np.round(counts * TARGET / counts.sum()), 1, N_ITEMS // 2).astype(np.int64)
    popularity = 1.0 / (np.arange(N_ITEMS) + 20.0) ** 0.8
    cdf = np.cumsum(rng.permutation(popularity))
    cdf /= cdf[-1]
    n_users = min(N_USERS, math.ceil(users / chunk) * chunk)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    cols_parts, value_parts = [], []
    for begin in range(0, n_users, chunk):
        c = counts[begin : begin + chunk]
        local = np.repeat(np.arange(c.shape[0], dtype=np.int64), c)
        items = np.searchsorted(cdf, rng.random(local.shape[0]))
        keys = np.unique(local * N_ITEMS + items)  # sorted by (user, item), duplicates gone
        rows = keys // N_ITEMS
        cols_parts.append((keys % N_ITEMS).astype(np.int32))
        value_parts.append(rng.integers(1, 6, size=keys.shape[0]).astype(np.float32))
        indptr[begin + 1 : begin + c.shape[0] + 1] = np.bincount(rows, minlength=c.shape[0])
    np.cumsum(indptr, out=indptr)
    return CSRMatrix(
        indptr=indptr,
        indices=np.concatenate(cols_parts),
        values=np.concatenate(value_parts),
        shape=(n_users, N_ITEMS),
    )


def full_architecture_config(precision: str, refeed: int) -> TrainConfig:
    """The paper's Full setting: n,512,512,1024,dp0.8,512,512,n, SELU, momentum SGD, batch 128."""
    return TrainConfig(
        hidden=[512, 512, 1024],
        dropout=0.8,
        activation="selu",
        optimizer="sgd",
        lr=0.005 if refeed else 0.001,
        momentum=0.9,
        batch_size=128,
        refeed_steps=refeed,
        compute="fast",
        precision=precision,
    )


def gpu_busy(step_fn, batches: list) -> dict:
    """On a GPU: the step's wall time and the part of it the GPU spent in kernels (the rest
    is the CPU: Python, launches, the loss read back each step)."""
    from torch.profiler import ProfilerActivity, profile

    for batch in batches[:2]:
        step_fn(batch)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for batch in batches:
            step_fn(batch)
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    kernels = sum(
        e.self_device_time_total for e in prof.key_averages() if e.device_type.name == "CUDA"
    )
    n = len(batches)
    return {
        "step_ms_under_profiler": round(wall / n * 1e3, 3),
        "gpu_kernel_ms": round(kernels / n / 1e3, 3),
        "gpu_busy_fraction": round(kernels / 1e6 / wall, 3),
    }


def machine() -> dict:
    """machine_facts() (CPU model, cores, memory, ISA, Python, torch, threads, commit), plus
    the GPU where there is one."""
    info = machine_facts()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["gpu_memory_gb"] = round(props.total_memory / 1e9, 1)
        info["cuda"] = torch.version.cuda
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def graph_busy(graph: GraphStep, plan, n: int) -> dict:
    """GPU busy over n graph-step batches: kernel time (the profiler sees the kernels inside
    graph replays through CUPTI) over wall time."""
    from torch.profiler import ProfilerActivity, profile

    n = min(n, plan.n_batches)
    graph.begin_epoch(plan)
    graph.run(0, 2)
    sync(graph.device)
    try:
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            start = time.perf_counter()
            graph.run(0, n)
            sync(graph.device)
            wall = time.perf_counter() - start
        events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    except Exception as exc:  # a profiler without CUPTI: say so, keep the timings
        return {"error": f"{type(exc).__name__}: {exc}"}
    kernels = sum(e.self_device_time_total for e in events)
    launches = sum(e.count for e in events)
    return {
        "profiled_batches": n,
        "step_ms_under_profiler": round(wall / n * 1e3, 3),
        "gpu_kernel_ms": round(kernels / n / 1e3, 3),
        "gpu_busy_fraction": round(kernels / 1e6 / wall, 3),
        "device_events_per_batch": round(launches / n, 1),
    }


def time_graph_setting(
    name: str, matrix: CSRMatrix, order, device, args, epoch_batches: int, publish
) -> dict:
    """One graph-* setting: build as the trainer does, capture every bucket, time epochs.
    `publish(result)` is called with the timings before profiling and again after it."""
    _, precision, refeed_text = name.split("-")
    refeed = int(refeed_text.removeprefix("refeed"))
    config = full_architecture_config(precision, refeed)
    torch.manual_seed(0)
    model = build_model(config, matrix.shape[1]).to(device)
    optimizer = build_optimizer(model.parameters(), config)
    make_step(model, optimizer, config)  # as Trainer does: FastStep's first-weight layout
    sync(device)
    t0 = time.perf_counter()
    graph = GraphStep(
        model,
        optimizer,
        matrix,
        batch_size=config.batch_size,
        precision=precision,
        refeed_steps=refeed,
        input_dropout=config.input_dropout,
    )
    sync(device)
    setup = time.perf_counter() - t0
    plan = graph.plan(order)
    graph.begin_epoch(plan)
    t0 = time.perf_counter()
    capture_steps = graph.capture_all(plan)
    graph.sse()
    capture = time.perf_counter() - t0
    seconds, sse, ratings, epochs = 0.0, 0.0, 0, []
    n = plan.n_batches if args.graph_batches <= 0 else min(args.graph_batches, plan.n_batches)
    enqueue, stream = [], []
    cuda = device.type == "cuda"
    for _ in range(args.graph_epochs):
        graph.begin_epoch(plan)
        sync(device)
        if cuda:
            first, last = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            first.record()
        t0 = time.perf_counter()
        graph.run(0, n)
        enqueue.append(round(time.perf_counter() - t0, 3))
        if cuda:
            last.record()
        epoch_sse = graph.sse()  # the one read-back: waits for every queued step
        took = time.perf_counter() - t0
        epochs.append(round(took, 3))
        if cuda:  # the stream's time: the GPU's work when the host queues ahead of it
            stream.append(round(first.elapsed_time(last) / 1e3, 3))
        seconds, sse, ratings = seconds + took, sse + epoch_sse, ratings + graph.count
    timed = args.graph_epochs * n
    per_batch = seconds / timed
    result = {
        "timed_batches": timed,
        "seconds_per_batch": round(per_batch, 6),
        "epoch_seconds": round(per_batch * epoch_batches, 2),
        "epoch_seconds_is": (
            f"measured over {args.graph_epochs} epoch(s) of {n} batches"
            if n == epoch_batches
            else f"extrapolated from {timed} batches ({args.graph_epochs} x batches 1-{n} of an "
            f"epoch of the first {matrix.shape[0]} users) to {epoch_batches}"
        ),
        "subset_epoch_seconds": epochs,
        # host time to queue the epoch vs the GPU stream's time for it: queueing faster than
        # the GPU runs means the GPU, not the CPU, bounds the epoch
        "host_enqueue_seconds": enqueue,
        "gpu_stream_seconds": stream,
        "ratings_per_second": round(ratings / seconds),
        "train_rmse_timed_batches": round(math.sqrt(sse / ratings), 4),
        "breakdown": "profiling (not finished)",
        "data_resident_on_gpu": graph.resident,
        "fused_sgd_update": graph.core.fused,
        "data_upload_and_setup_seconds": round(setup, 2),
        "buckets_used": len(np.unique(plan.padded)),
        "padding_fraction": round(1 - plan.nnz.sum() / plan.padded.sum(), 4),
        "graphs_captured": len(graph.graphs),
        "capture_seconds": round(capture, 2),
        "capture_steps": capture_steps,
    }
    publish(result)
    result["breakdown"] = (
        graph_busy(graph, plan, args.profile_batches) if args.profile_batches > 0 else None
    )
    publish(result)
    del graph, model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def write_partial(report: dict, out: str | None) -> None:
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(out, "w") as handle:
            handle.write(json.dumps(report, indent=2, default=str) + "\n")


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=60, help="timed batches; 0 = full epoch")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=10, help="batches per round-robin turn")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--users", type=int, default=N_USERS, help="first N users only (extrapolated epoch)"
    )
    parser.add_argument(
        "--settings",
        default="fast-fp32-refeed0,fast-bf16-refeed0,fast-fp32-refeed1,fast-bf16-refeed1",
        help="comma-separated settings; also "
        "reference-{fp32,bf16}-refeed{0,1} (NVIDIA's dense procedure)",
    )
    parser.add_argument(
        "--graph-epochs", type=int, default=1, help="graph-*: timed epochs over the subset"
    )
    parser.add_argument(
        "--graph-batches",
        type=int,
        default=0,
        help="graph-*: time only this many batches per epoch (0 = whole epochs); on the CPU "
        "graph-* runs eagerly, a smoke test",
    )
    parser.add_argument("--profile-batches", type=int, default=100, help="graph-*: profiled")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    wanted = args.settings.split(",")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    report: dict = {"threads": args.threads, "load_average_before": os.getloadavg()}
    report["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report["machine"] = machine()
    start = time.perf_counter()
    matrix = synthetic_netflix(users=args.users)
    report["data"] = {
        "users": matrix.shape[0],
        "items": matrix.shape[1],
        "ratings": matrix.nnz,
        "generate_seconds": round(time.perf_counter() - start, 1),
        "peak_rss_gb_after_generation": round(rss_gb(), 2),
    }
    print(json.dumps(report["data"]), file=sys.stderr, flush=True)
    rows = np.flatnonzero(matrix.row_lengths() > 0)
    order = epoch_order(rows, 1, 1)
    batch_size = 128
    n_batches = math.ceil(rows.shape[0] / batch_size)
    # the epoch the timings stand for: all users of the full data set
    full_epoch_batches = math.ceil(rows.shape[0] * N_USERS / matrix.shape[0] / batch_size)
    # --batches 0: every batch after the warm-up ones, i.e. the rest of one real epoch
    timed = n_batches - args.warmup if args.batches <= 0 else min(args.batches, n_batches)
    if not [w for w in wanted if not w.startswith("graph-")]:
        timed = 0  # graph settings only
    # the GPU-bound step first (the issue's measurement); partial reports survive a timeout
    graph_runs: dict = {}
    report["epoch_batches"] = full_epoch_batches
    report["graph_runs"] = graph_runs
    for name in [w for w in wanted if w.startswith("graph-")]:

        def publish(result: dict, name: str = name) -> None:
            graph_runs[name] = result
            print(f"{name}: {json.dumps(result)}", file=sys.stderr, flush=True)
            write_partial(report, args.out)

        time_graph_setting(name, matrix, order, device, args, full_epoch_batches, publish)
    settings = {}
    config = full_architecture_config("fp32", 0)
    variants = [("fast", p, r) for r in (0, 1) for p in ("fp32", "bf16")]
    variants += [("reference", p, r) for r in (0, 1) for p in ("fp32", "bf16")]
    for compute, precision, refeed in variants:
        name = f"{compute}-{precision}-refeed{refeed}"
        if name in wanted:
            config = dataclasses.replace(
                full_architecture_config(precision, refeed), compute=compute
            )
            torch.manual_seed(0)
            model = build_model(config, matrix.shape[1]).to(device)
            optimizer = build_optimizer(model.parameters(), config)
            settings[name] = {
                "step": make_step(model, optimizer, config),
                "seconds": 0.0,
                "ratings": 0,
                "sse": 0.0,
            }
    # glibc keeps freed large blocks only when started with the README's MALLOC_* settings
    report["malloc_env"] = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    warm = list(
        iter_row_batches(matrix, order[: args.warmup * batch_size], batch_size, prepare=True)
    )
    for state in settings.values():
        for batch in warm:
            state["step"](batch.to(device))
    # round-robin turns of `chunk` batches; each turn times a stream built as in training
    report["prefetch_depth"] = prefetch_depth(device)
    begin = args.warmup
    end = args.warmup + timed
    turn = 0
    while begin < end:
        stop = min(begin + args.chunk, end)
        names = list(settings) if turn % 2 == 0 else list(reversed(settings))
        for name in names:
            state = settings[name]
            stream = prefetch(
                iter_row_batches(
                    matrix, order[begin * batch_size : stop * batch_size], batch_size, prepare=True
                ),
                depth=report["prefetch_depth"],
            )
            t0 = time.perf_counter()
            for batch in stream:
                result = state["step"](batch.to(device))
                state["ratings"] += result.count
                state["sse"] += result.sse
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            state["seconds"] += time.perf_counter() - t0
        print(f"batches {begin}..{stop} done", file=sys.stderr, flush=True)
        begin = stop
        turn += 1
    profile_from = end if end + 4 <= n_batches else 0  # after a full epoch: its first ones
    profile_batch = list(
        iter_row_batches(
            matrix,
            order[profile_from * batch_size : (profile_from + 4) * batch_size],
            batch_size,
            prepare=True,
        )
    )
    runs = report["runs"] = {}
    for name, state in settings.items():
        per_batch = state["seconds"] / timed
        epoch = per_batch * full_epoch_batches
        batches = [b.to(device) for b in profile_batch]
        planner = getattr(state["step"], "planner", None)
        runs[name] = {
            "timed_batches": timed,
            "seconds_per_batch": round(per_batch, 4),
            "epoch_seconds": round(epoch, 1),
            "epoch_seconds_is": (
                f"measured over batches {args.warmup + 1}-{n_batches}, times {n_batches} / {timed}"
                if args.batches <= 0 and full_epoch_batches == n_batches
                else f"extrapolated from {timed} batches to {full_epoch_batches}"
            ),
            "ratings_per_second": round(state["ratings"] / state["seconds"]),
            "train_rmse_timed_batches": round(math.sqrt(state["sse"] / state["ratings"]), 4),
            "breakdown": (
                profile_steps(state["step"], batches)
                if device.type == "cpu"
                else gpu_busy(state["step"], batches)
            ),
            # fast steps only: the planner's choices and the matrices with the fused update
            "output_strategy_counts": planner.counts if planner is not None else None,
            "fused_bf16_update_matrices": len(getattr(state["step"], "_fused", ())),
        }
        write_partial(report, args.out)
    report["epoch_batches"] = full_epoch_batches
    report["runs"] = runs
    report["peak_rss_gb"] = round(rss_gb(), 2)
    if device.type == "cuda":
        report["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
    report["load_average_after"] = os.getloadavg()
    targets = {
        "bf16 refeed1 epoch < 300 s": "fast-bf16-refeed1",
        "fp32 refeed1 epoch < 480 s": "fast-fp32-refeed1",
        "bf16 refeed0 epoch < 120 s": "fast-bf16-refeed0",
    }
    report["targets"] = {k: runs[v]["epoch_seconds"] for k, v in targets.items() if v in runs}
    report["targets"]["peak memory < 12 GB"] = report["peak_rss_gb"]
    if graph_runs:  # issue 21's targets on one H200, and the per-batch step of the same run
        for name, run in graph_runs.items():
            old = runs.get(name.replace("graph-", "fast-"))
            if old is not None:
                run["speedup_vs_per_batch"] = round(
                    old["seconds_per_batch"] / run["seconds_per_batch"], 2
                )
        issue = report["targets_gpu"] = {}

        def epoch(name: str) -> float | None:
            return graph_runs[name]["epoch_seconds"] if name in graph_runs else None

        issue["fp32 refeed0 epoch <= 2 s"] = epoch("graph-fp32-refeed0")
        issue["fp32 refeed1 epoch <= 3 s"] = epoch("graph-fp32-refeed1")
        for refeed in (0, 1):
            fp32, bf16 = epoch(f"graph-fp32-refeed{refeed}"), epoch(f"graph-bf16-refeed{refeed}")
            if fp32 is not None and bf16 is not None:
                issue[f"bf16 faster than fp32, refeed{refeed} (fp32/bf16)"] = round(fp32 / bf16, 2)
        issue["gpu busy > 0.8"] = {
            name: (run["breakdown"] or {}).get("gpu_busy_fraction")
            for name, run in graph_runs.items()
        }
        issue["before (docs/results/cuda_check.md run 2)"] = {"fp32 refeed0": 9.6, "refeed1": 14.3}
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
