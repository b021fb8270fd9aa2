"""A cold first propagate compiles each kernel once: the backward layer in the child, the rest here."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastinit
from fastinit._compile_ahead import layer_signatures
from fastinit._kernels import layer

# Runs in a fresh interpreter with an empty NUMBA_CACHE_DIR; prints which kernels this
# process compiled (numba's compile events name the dispatcher and its argument types).
_COLD_CALL = textwrap.dedent("""
    import json, sys
    from numba.core import event
    with event.install_recorder("numba:compile") as recorder:
        import fastinit
        first = fastinit.propagate("orthogonal", "tanh", depth=3, width=8, batch=4, dtype=sys.argv[1])
        again = fastinit.propagate("orthogonal", "tanh", depth=3, width=8, batch=4, dtype=sys.argv[1])
    compiled = [(ev.data["dispatcher"].py_func.__qualname__, str(ev.data["args"]))
                for _, ev in recorder.buffer if ev.is_start and ev.data["dispatcher"].py_func.__module__.startswith("fastinit")]
    print(json.dumps({"compiled": compiled, "same": bool(first.equals(again)),
                      "sums": first[["log10_fwd_var", "log10_grad_var"]].to_numpy().tolist()}))
""")


def _cold_run(tmp_path, dtype):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    done = subprocess.run([sys.executable, "-c", _COLD_CALL, dtype], env=env, capture_output=True, text=True,
                          timeout=900, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_cold_call_compiles_the_backward_layer_only_in_the_child(tmp_path):
    run = _cold_run(tmp_path, "float32")
    names = [name for name, _ in run["compiled"]]
    assert "backward_layer" not in names, "the walk compiled the backward layer again instead of loading the child's"
    assert names.count("forward_layer") == 1
    assert names.count("walk") == 1
    # Every fastinit kernel compiled here compiled once per signature (type-stable arguments).
    assert len(run["compiled"]) == len(set(map(tuple, run["compiled"])))
    assert run["same"]
    # The numbers are the kernels' own: the same as this process computes with its cache.
    here = fastinit.propagate("orthogonal", "tanh", depth=3, width=8, batch=4, dtype="float32")
    np.testing.assert_array_equal(np.asarray(run["sums"]), here[["log10_fwd_var", "log10_grad_var"]].to_numpy())


def test_layer_signatures_are_the_records_types():
    from fastinit.propagate import Plan

    plan = Plan.build("he_normal", "relu", depth=2, width=8, batch=4, dtype="float64")
    forward, backward = layer_signatures(plan.config(), plan.workspace(*plan.inputs()))
    assert len(forward) == layer.forward_layer.py_func.__code__.co_argcount
    assert len(backward) == layer.backward_layer.py_func.__code__.co_argcount
    assert str(forward[5]) == "array(float64, 2d, C)"
