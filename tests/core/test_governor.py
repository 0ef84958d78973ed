"""The thread governor keeps a process to the cores no other process uses (mood_dpa.runtime.ThreadGovernor)."""

from __future__ import annotations

import os

import torch

from mood_dpa.runtime import ThreadGovernor, _read_proc_stat


def test_threads_follow_the_cores_the_rest_of_the_machine_leaves(monkeypatch):
    busy = {"s": 0.0}
    own = {"s": 0.0}
    monkeypatch.setattr(os, "times", lambda: (own["s"], 0.0, 0.0, 0.0, 0.0))
    set_to = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: set_to.append(n))
    gov = ThreadGovernor(max_threads=4, every=2.0, read_stat=lambda: busy["s"])
    assert gov.check(now=0.0) == 4 and set_to == []  # the first look only takes a reading
    # 2 s later: this process used 4 cores x 2 s, the machine 8 s busy: nobody else -> stays at 4
    busy["s"] += 8.0
    own["s"] += 8.0
    assert gov.check(now=2.0) == 4 and set_to == []
    assert gov.check(now=3.0) == 4  # within the interval: no new reading
    # another program keeps one core busy (2 s in the 2 s): 3 threads
    busy["s"] += 6.0 + 2.0
    own["s"] += 6.0
    assert gov.check(now=4.0) == 3 and set_to == [3]
    # others take (nearly) everything: never fewer than one thread
    busy["s"] += 8.0
    own["s"] += 0.5
    assert gov.check(now=6.0) == 1 and set_to[-1] == 1
    # the others stop: back to every core
    busy["s"] += 2.0
    own["s"] += 2.0
    assert gov.check(now=8.0) == 4 and set_to[-1] == 4


def test_threads_for_rounds_towards_keeping_a_core_free():
    gov = ThreadGovernor(max_threads=2, read_stat=lambda: 0.0)
    assert [gov.threads_for(o) for o in (0.0, 0.3, 0.7, 1.0, 1.9, 5.0)] == [2, 2, 1, 1, 1, 1]


def test_the_machine_reading_is_busy_seconds_when_proc_stat_exists():
    value = _read_proc_stat()
    assert value is None or value > 0.0
