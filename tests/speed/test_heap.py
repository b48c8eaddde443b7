"""reuse_freed_memory: active only inside the block, re-entrant, off when disabled, and
training with it gives the same numbers as without."""

from __future__ import annotations

import threading

import pytest

from deeprec.train import heap

from .test_bf16_training import low_rank_data, train_once


def test_active_only_inside_and_nested_blocks_keep_it_on() -> None:
    assert not heap.active()
    with heap.reuse_freed_memory() as outer:
        assert outer == heap.available()
        with heap.reuse_freed_memory():
            pass
        assert heap.active() == heap.available()  # the inner exit did not restore defaults
    assert not heap.active()


def test_disabled_does_nothing() -> None:
    with heap.reuse_freed_memory(enabled=False) as on:
        assert on is False
        assert not heap.active()


def test_threads_share_one_counter() -> None:
    if not heap.available():
        pytest.skip("not glibc")
    inside = threading.Barrier(3)
    leave = threading.Event()

    def worker() -> None:
        with heap.reuse_freed_memory():
            inside.wait()
            leave.wait()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait()
    assert heap.active()
    leave.set()
    for t in threads:
        t.join()
    assert not heap.active()


def test_training_gives_the_same_numbers_with_and_without() -> None:
    data = low_rank_data(3)
    on = train_once(data, compute="fast", reuse_freed_memory=True)
    off = train_once(data, compute="fast", reuse_freed_memory=False)
    assert on == off
