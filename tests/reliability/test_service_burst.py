"""The HTTP service under a bounded burst of malformed requests mixed with good ones, on
loopback only: every good request gets exactly the answer it gets when the server is idle,
every bad one a 4xx with a JSON message (never a 5xx or a dropped connection), and the
server answers correctly afterwards."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from deeprec.base import load_model
from deeprec.runs.training import train_run
from deeprec.train.config import TrainConfig

from .conftest import SETTINGS, cli_env

N_REQUESTS = 600  # the burst: about a third good, the rest malformed
N_RAW = 40  # raw-socket garbage: broken request lines, half-sent bodies, early closes
WORKERS = 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(prepared, tmp_path_factory):
    run = tmp_path_factory.mktemp("serve") / "run"
    config = TrainConfig().with_overrides([*SETTINGS, "epochs=2"])
    train_run(prepared, config, run, progress=False, echo=lambda _m: None)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "deeprec", "serve", "--run", str(run), "--port", str(port)],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)
    yield base, port, load_model(run / "best"), proc
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def good_requests(model) -> list[tuple[str, dict]]:
    users = [int(u) for u in model.user_ids_[:5]]
    items = [int(i) for i in model.item_ids_[:12]]
    new_user = {str(items[i]): float(1 + i % 5) for i in range(6)}
    return [
        ("/predict", {"user": users[0], "items": items}),
        ("/predict", {"user": users[3], "items": [*items[:3], 99999]}),
        ("/recommend", {"user": users[1], "k": 5}),
        ("/recommend", {"ratings": new_user, "k": 7}),
        ("/predict", {"ratings": new_user, "items": items[5:]}),
    ]


def bad_requests(model) -> list[tuple[str, bytes | dict, int | None]]:
    """(path, body, expected status or None for any 4xx)."""
    user = int(model.user_ids_[0])
    item = int(model.item_ids_[0])
    return [
        ("/predict", b"{not json", 422),
        ("/predict", b"", 422),
        ("/predict", b"\xff\xfe\x00garbage", 422),
        ("/predict", b'{"user": 1, "items": [1, 2', 422),
        ("/predict", {"user": user}, 422),
        ("/predict", {"user": user, "items": []}, 422),
        ("/predict", {"user": [user], "items": [item]}, 422),
        ("/predict", {"user": user, "ratings": {str(item): 3.0}, "items": [item]}, 422),
        ("/predict", {"ratings": {str(item): "NaN"}, "items": [item]}, 422),
        ("/predict", b'{"ratings": {"1": NaN}, "items": [1]}', 422),
        ("/predict", {"ratings": {str(item): 1e308 * 10}, "items": [item]}, 422),
        ("/predict", {"ratings": {str(item): 99.0}, "items": [item]}, 422),
        ("/predict", {"user": 10**30, "items": [item]}, None),
        ("/predict", {"user": user, "items": [item], "extra": 1}, 422),
        ("/predict", {"user": user, "items": [item] * 20_000}, 422),
        ("/predict", b"[" * 5000 + b"]" * 5000, None),
        ("/recommend", {"user": 987654321, "k": 5}, 404),
        ("/recommend", {"user": user, "k": 0}, 422),
        ("/recommend", {"user": user, "k": -3}, 422),
        ("/recommend", {"user": user, "k": 10**9}, 422),
        ("/recommend", {"user": user, "k": "5"}, 422),
        ("/recommend", {"ratings": {}, "k": 5}, 422),
        ("/recommend", b'{"user": 1, "k": 5}' + b" " * 1_100_000, 413),
        ("/recommend", {"user": None, "ratings": None}, 422),
        ("/nope", {"user": user}, 404),
    ]


def _post(client: httpx.Client, path: str, body) -> httpx.Response:
    if isinstance(body, bytes):
        return client.post(path, content=body, headers={"content-type": "application/json"})
    return client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def _raw_garbage(port: int, index: int) -> None:
    """Misbehaving clients: junk request lines, lying Content-Length, early close."""
    payloads = [
        b"GARBAGE\r\n\r\n",
        b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{"user"',
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"\x00\x01\x02\x03" * 64,
        b"GET / HTTP/9.9\r\n\r\n",
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payloads[index % len(payloads)])
        if index % 2:
            return  # hang up without reading
        sock.settimeout(1)
        with contextlib.suppress(TimeoutError, ConnectionError):
            sock.recv(4096)


def test_burst_of_malformed_requests(served):
    base, port, model, proc = served
    goods = good_requests(model)
    bads = bad_requests(model)
    with httpx.Client(base_url=base, timeout=30) as client:
        expected = [_post(client, path, body).json() for path, body in goods]
        for response, (path, body) in zip(expected, goods, strict=True):
            assert "detail" not in response, (path, body, response)

    rng = random.Random(8)
    plan = [
        ("good", rng.randrange(len(goods)))
        if rng.random() < 0.35
        else ("bad", rng.randrange(len(bads)))
        for _ in range(N_REQUESTS)
    ]

    local = threading.local()
    clients: list[httpx.Client] = []

    def one(entry):
        kind, index = entry
        if not hasattr(local, "client"):  # one keep-alive client per worker thread
            local.client = httpx.Client(base_url=base, timeout=30)
            clients.append(local.client)
        path, body = goods[index] if kind == "good" else bads[index][:2]
        response = _post(local.client, path, body)
        return kind, index, response.status_code, response.json()

    with ThreadPoolExecutor(WORKERS) as pool:
        raw = pool.map(lambda i: _raw_garbage(port, i), range(N_RAW))
        results = list(pool.map(one, plan))
        list(raw)
    for client in clients:
        client.close()

    counts = {"good": 0, "bad": 0}
    for kind, index, status, body in results:
        counts[kind] += 1
        if kind == "good":
            assert status == 200 and _same(body, expected[index]), (goods[index], status, body)
        else:
            want = bads[index][2]
            assert 400 <= status < 500 and "detail" in body, (bads[index][:2], status, body)
            if want is not None:
                assert status == want, (bads[index][:2], status, body)
    assert counts["good"] > 100 and counts["bad"] > 300
    assert proc.poll() is None  # still running
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/health").json()["status"] == "ok"
        after = [_post(client, path, body).json() for path, body in goods]
    assert all(_same(a, e) for a, e in zip(after, expected, strict=True))


def _same(got, want, tol: float = 1e-5) -> bool:
    """Equal answers; scores may differ in the last float32 bits when the server's
    micro-batcher computes a request together with others (another matmul blocking)."""
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and got.keys() == want.keys()
            and all(_same(got[k], want[k], tol) for k in want)
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(_same(g, w, tol) for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, float) and isinstance(got, (int, float)):
        return abs(got - want) <= tol * max(1.0, abs(want))
    return got == want
