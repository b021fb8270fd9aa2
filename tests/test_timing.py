"""The peer benchmarks' interleaved timing (asv_bench/_timing.py), on a fake clock."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "asv_bench"))
import _timing  # noqa: E402 -- a script directory, not a package


class _Machine:
    """A fake clock whose speed halves after ``switch`` timed calls: work of ``cost`` takes ``cost * slowdown``."""

    def __init__(self, switch):
        self.now, self.calls, self.switch, self.order = 0.0, 0, switch, []

    def work(self, label, cost):
        def run():
            self.order.append(label)
            self.calls += 1
            self.now += cost * (2.0 if self.calls > self.switch else 1.0)
        return run

    def perf_counter(self):
        return self.now


def test_paired_ratio_survives_a_change_of_machine_speed(monkeypatch):
    machine = _Machine(switch=2 * 2 * 5)  # each timed call follows an untimed one: 5 of 10 rounds at full speed
    monkeypatch.setattr(_timing.time, "perf_counter", machine.perf_counter)
    times = _timing.interleaved_seconds({"a": machine.work("a", 1.0), "b": machine.work("b", 3.0)}, repeat=10)
    assert _timing.paired_ratio(times, "b", "a") == pytest.approx(3.0)
    (a, _, to_itself), (b, _, to_a) = _timing.compared(times, ["a", "b"], "a")
    assert (a, b, to_itself) == ("a", "b", 1.0) and to_a == pytest.approx(3.0)
    # Timed one after the other (a's rounds all fast, b's all slow) the ratio would read 6.
    machine = _Machine(switch=1 + 5)
    monkeypatch.setattr(_timing.time, "perf_counter", machine.perf_counter)
    a = _timing.median_seconds(machine.work("a", 1.0), 5)
    b = _timing.median_seconds(machine.work("b", 3.0), 5)
    assert b / a == pytest.approx(6.0)


def test_rounds_rotate_and_slow_functions_take_part_in_the_first_rounds(monkeypatch):
    machine = _Machine(switch=10**9)
    monkeypatch.setattr(_timing.time, "perf_counter", machine.perf_counter)
    functions = {label: machine.work(label, 1.0) for label in "abc"}
    times = _timing.interleaved_seconds(functions, repeat=4, counts={"c": 2})
    assert machine.order == list("aabbcc") + list("bbccaa") + list("aabb") + list("aabb")
    assert [len(times[label]) for label in "abc"] == [4, 4, 2]
