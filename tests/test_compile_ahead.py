"""A cold first call compiles each kernel once: the backward subtree in the child, the rest here."""

import importlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastinit
import fastinit.train
from fastinit._kernels import blocks, draw, layer, walk
from fastinit.train import _kernels as train_kernels

# Runs in a fresh interpreter with an empty NUMBA_CACHE_DIR; prints which of fastinit's kernels
# this process compiled (numba's compile events name the dispatcher and its argument types).
_COLD_CALL = textwrap.dedent("""
    import json, sys
    from numba.core import event
    with event.install_recorder("numba:compile") as recorder:
        import fastinit, fastinit.train
        if sys.argv[1] == "propagate":
            first = fastinit.propagate("orthogonal", "tanh", depth=3, width=8, batch=4, dtype="float32")
            again = fastinit.propagate("orthogonal", "tanh", depth=3, width=8, batch=4, dtype="float32")
            numbers = first[["log10_fwd_var", "log10_grad_var"]]
        else:
            first = fastinit.train.run("he_normal", "tanh", depth=3, width=16, task="teacher", epochs=2)
            again = fastinit.train.run("he_normal", "tanh", depth=3, width=16, task="teacher", epochs=2)
            numbers = first[["loss"]]
    from fastinit._compile_ahead import fastinit_compiles
    compiled = fastinit_compiles(recorder)
    print(json.dumps({"compiled": compiled, "same": bool(first.equals(again)), "numbers": numbers.to_numpy().tolist()}))
""")


# Runs in a fresh interpreter with an empty NUMBA_CACHE_DIR: compiles one side's stages of a cold compile in
# order and prints, per stage, the fastinit kernels that stage compiled (beyond this side's earlier stages).
_STAGE_COMPILES = textwrap.dedent("""
    import importlib, json, sys
    import numpy as np
    from numba.core import event
    from fastinit._compile_ahead import fastinit_compiles
    job, side = sys.argv[1], sys.argv[2]
    module = importlib.import_module(job)
    if side == "child":
        stages = module._child_compile_stages("float32")
    elif job == "fastinit.propagate":
        stages = module._parent_compile_stages(*module._sample_records("float32"))
    else:
        stages = module._parent_compile_stages(module._sample_signatures("float32"), np.dtype("float32"))
    compiled = []
    for stage in stages:
        with event.install_recorder("numba:compile") as recorder:
            for dispatcher, signature in stage:
                dispatcher.compile(signature)
        compiled.append(sorted(set(fastinit_compiles(recorder))))
    print(json.dumps(compiled))
""")


@pytest.mark.slow
@pytest.mark.parametrize("job", ["fastinit.propagate", "fastinit.train.run"])
def test_no_stage_has_a_kernel_both_sides_would_compile(tmp_path, job):
    # Timing-free: in a real cold compile, the side that reaches a kernel second loads it only if the first has
    # written it already, so two sides reaching one kernel in the same stage is a race (CI once lost it).  Stage
    # k of a side compiles what it reaches beyond its own earlier stages and, loaded from the cache, everything
    # both sides compiled in earlier stages.
    def start(side):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / side))
        return subprocess.Popen([sys.executable, "-c", _STAGE_COMPILES, job, side], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    runs = [start("parent"), start("child")]
    parent, child = [json.loads(run.communicate(timeout=900)[0].strip().splitlines()[-1]) for run in runs]
    assert len(parent) == len(child)
    loaded = set()
    for stage, (here, there) in enumerate(zip(parent, child)):
        here, there = set(map(tuple, here)) - loaded, set(map(tuple, there)) - loaded
        assert here and there, f"stage {stage} of {job} leaves one side idle"
        assert not here & there, f"stage {stage} of {job}: both sides compile {sorted(here & there)}"
        loaded |= here | there


def _cold_run(tmp_path, what):
    child_events = tmp_path / "child-compiles.json"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"), FASTINIT_COMPILE_AHEAD_EVENTS=str(child_events))
    done = subprocess.run([sys.executable, "-c", _COLD_CALL, what], env=env, capture_output=True, text=True,
                          timeout=900, check=True)
    run = json.loads(done.stdout.strip().splitlines()[-1])
    run["child"] = json.loads(child_events.read_text())
    return run


def _check_compiled_once(run, top, forward, *in_child):
    names = [name for name, _ in run["compiled"]]
    child = [name for name, _ in run["child"]]
    for name in in_child:
        assert name in child, f"the child did not compile {name}"
        assert name not in names, f"{top} compiled {name} again instead of loading the child's"
    both = set(map(tuple, run["compiled"])) & set(map(tuple, run["child"]))
    assert not both, f"compiled in both processes: {sorted(both)}"
    assert names.count(forward) == 1
    assert names.count(top) == 1
    # Every fastinit kernel compiled here compiled once per signature (type-stable arguments).
    assert len(run["compiled"]) == len(set(map(tuple, run["compiled"])))
    assert run["same"]


@pytest.mark.slow
def test_a_cold_propagate_compiles_the_backward_layer_and_activate_block_only_in_the_child(tmp_path):
    run = _cold_run(tmp_path, "propagate")
    _check_compiled_once(run, "forward_pass", "forward_layer", "backward_pass", "backward_layer", "activate_block")
    names = [name for name, _ in run["compiled"]]
    assert names.count("draw_weights_share") == 1
    assert names.count("fill_serial") == 2  # here, for the inputs and biases: float64 and the net's float32
    # The numbers are the kernels' own: the same as this process computes with its cache.
    here = fastinit.propagate("orthogonal", "tanh", depth=3, width=8, batch=4, dtype="float32")
    np.testing.assert_array_equal(np.asarray(run["numbers"]), here[["log10_fwd_var", "log10_grad_var"]].to_numpy())


@pytest.mark.slow
def test_a_cold_train_run_compiles_the_backward_pass_and_the_update_only_in_the_child(tmp_path):
    run = _cold_run(tmp_path, "train")
    _check_compiled_once(run, "train_epoch", "forward", "backward", "optimizer_step", "distinct_rows", "record_state")
    here = fastinit.train.run("he_normal", "tanh", depth=3, width=16, task="teacher", epochs=2)
    np.testing.assert_array_equal(np.asarray(run["numbers"]), here[["loss"]].to_numpy())


def test_signatures_have_one_type_per_parameter():
    from fastinit.propagate import Plan

    plan = Plan.build("he_normal", "relu", depth=2, width=8, batch=4, dtype="float64")
    signatures = layer.signatures(plan.config(), plan.workspace(*plan.inputs()))
    for name, dispatcher in [("forward_layer", layer.forward_layer), ("backward_layer", layer.backward_layer),
                             ("draw_weights_share", draw.draw_weights_share), ("activate_block", blocks.activate_block)]:
        assert signatures[name][0] is dispatcher, name
    passes = walk.signatures(plan.config(), plan.workspace(*plan.inputs()))
    assert passes["forward_pass"][0] is walk.forward_pass and passes["backward_pass"][0] is walk.backward_pass
    for name, (dispatcher, arguments) in {**signatures, **passes}.items():
        assert len(arguments) == dispatcher.py_func.__code__.co_argcount, name
    assert str(signatures["forward_layer"][1][5]) == "array(float64, 2d, C)"
    train_run = importlib.import_module("fastinit.train.run")  # the module: fastinit.train.run is the function
    train_plan = train_run.Plan.build("he_normal", "relu", depth=2, width=8, task="teacher", epochs=1)
    signatures = train_kernels.signatures(*train_run._train_args(train_plan, train_run.build_network(train_plan)))
    for name, (dispatcher, arguments) in signatures.items():
        assert dispatcher is getattr(train_kernels, name)
        assert len(arguments) == dispatcher.py_func.__code__.co_argcount, name
