"""Buffers lent from one propagate run to the next change no result."""

import numpy as np

from fastinit import _spare, propagate

SHAPES = dict(depth=12, width=16, batch=8, seed=3)


def test_a_given_back_buffer_is_lent_once_to_the_same_name_shape_and_dtype():
    _spare.release()
    mine = np.empty((4, 6), dtype=np.float32)
    _spare.give_back({"seg_h": mine})
    assert _spare.empty("seg_h", (4, 6), np.float64) is not mine  # another dtype
    assert _spare.empty("grad", (4, 6), np.float32) is not mine  # another buffer
    assert _spare.empty("seg_h", (4, 6), np.float32) is mine
    assert _spare.empty("seg_h", (4, 6), np.float32) is not mine  # lent once: the run owns it now


def test_a_run_on_lent_buffers_equals_a_run_on_fresh_ones():
    _spare.release()
    fresh = propagate("he_normal", "tanh", bias_std=0.2, **SHAPES)
    # A run of the same shapes leaves its numbers in the buffers the next run borrows.
    propagate("normal", "relu", init_params={"std": 3.0}, **SHAPES)
    lent_before = dict(_spare._spare)
    assert lent_before, "propagate gave no buffers back"
    lent = propagate("he_normal", "tanh", bias_std=0.2, **SHAPES)
    stored_layers = next(array for (name, _, _), array in lent_before.items() if name == "seg_h")
    assert any(array is stored_layers for array in _spare._spare.values()), "the second run did not borrow seg_h"
    assert lent.equals(fresh)
    _spare.release()
    assert not _spare._spare
