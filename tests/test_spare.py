"""Buffers lent from one propagate run to the next change no result."""

import numpy as np
import pytest

from fastinit import _spare, propagate
from fastinit.propagate import Plan

SHAPES = dict(depth=12, width=16, batch=8, seed=3)


def test_a_given_back_buffer_is_lent_once_and_the_others_are_dropped():
    _spare.release()
    mine, other = np.empty((4, 6), dtype=np.float32), np.empty(9, dtype=np.float32)
    _spare.give_back({"seg_h": mine, "grad": other})
    taken = _spare.take({"seg_h": (4, 6), "wgrad": 5}, np.float32)
    assert taken["seg_h"] is mine
    assert taken["wgrad"].shape == (5,)
    assert not _spare._spare, "a spare the run did not take is still held"
    _spare.give_back({"seg_h": mine})
    assert _spare.take({"seg_h": (4, 6)}, np.float64)["seg_h"] is not mine  # another dtype


@pytest.mark.parametrize("options", [
    dict(init="he_normal", activation="tanh", bias_std=0.2),
    dict(init="orthogonal", activation="relu", residual=0.5),
    dict(init="he_normal", activation="gelu", norm="layer", norm_at="branch", residual=1.0),
    dict(init="he_normal", activation="relu", norm="batch"),
    dict(init="he_normal", activation="silu", norm="layer", norm_at="output", residual=0.5),
    # Segments recomputed from their checkpoints: a budget that keeps 4 layers at a time.
    dict(init="he_uniform", activation="tanh", memory_budget=8 * 1024),
], ids=["tanh-bias", "orthogonal-residual", "prenorm", "batchnorm", "postnorm", "small-budget"])
def test_a_run_on_nan_filled_lent_buffers_equals_a_run_on_fresh_ones(options):
    _spare.release()
    fresh = propagate(**options, **SHAPES)
    # Lend NaN-filled buffers of exactly the shapes this run takes: a read before a write shows.
    init, activation = options["init"], options["activation"]
    plan = Plan.build(init, activation, **{k: v for k, v in options.items() if k not in ("init", "activation")},
                      **SHAPES)
    workspace = plan.workspace(*plan.input_buffers())
    poisoned = {name: getattr(workspace, name) for name in plan.lent_shapes()}
    for array in poisoned.values():
        array.fill(np.nan)
    _spare.give_back(poisoned)
    lent = propagate(**options, **SHAPES)
    assert any(array is poisoned["seg_h"] for array in _spare._spare.values()), "the run did not borrow seg_h"
    assert lent.equals(fresh)
    _spare.release()
    assert not _spare._spare
