"""fastinit.initializers.register: a user's initializer works wherever a built-in does.

Held against the built-ins a user module repeats (the same formulas give the same bits:
``copy_lecun`` is lecun_normal, ``copy_flax`` is flax_default) and against the sample variance
of a uniform draw, with a tolerance from the sample size.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import Z_TOL

import user_initializers as user
from analysis import theory
from fastinit import get_initializer, propagate, sample
from fastinit.initializers import declared_variance
from fastinit.initializers import USER_INITIALIZERS, register
from fastinit.sweep import build_study, expand, load, run_study

TESTS = Path(__file__).parent


@pytest.mark.parametrize("mine, builtin", [("copy_lecun", "lecun_normal"), ("copy_flax", "flax_default")])
def test_a_registered_copy_draws_the_builtins_bits(mine, builtin):
    np.testing.assert_array_equal(sample(mine, (64, 96), seed=4), sample(builtin, (64, 96), seed=4))
    assert declared_variance(mine, (64, 96)) == declared_variance(builtin, (64, 96))
    common = dict(depth=6, width=40, batch=8, seed=2)
    pd.testing.assert_frame_equal(propagate(mine, "tanh", **common), propagate(builtin, "tanh", **common),
                                  check_exact=True)
    pd.testing.assert_frame_equal(theory.predict(mine, "tanh", depth=6, width=40),
                                  theory.predict(builtin, "tanh", depth=6, width=40), check_exact=True)


def test_a_parameter_is_validated_and_scales_the_draw():
    n = 400 * 300
    w = sample("scaled_uniform", (400, 300), seed=9, dtype="float64", factor=0.5)
    variance = 0.5 / 300
    limit = math.sqrt(3 * variance)
    assert np.abs(w).max() <= limit
    # Var of the sample variance of U[-s, s]: (mu4 - sigma^4) / n with mu4 = s^4 / 5, sigma^2 = s^2 / 3.
    spread = math.sqrt((limit**4 / 5 - variance**2) / n)
    assert abs(w.var() - variance) <= Z_TOL * spread
    assert declared_variance("scaled_uniform", (400, 300), factor=0.5) == pytest.approx(variance, rel=1e-15)
    with pytest.raises(ValueError, match="factor"):
        sample("scaled_uniform", (4, 3), factor=float("nan"))
    with pytest.raises(TypeError, match="unknown parameter 'facto'"):
        sample("scaled_uniform", (4, 3), facto=1.0)


def test_module_spelling():
    assert get_initializer("user_initializers:scaled_uniform") is user.SCALED_UNIFORM
    assert user.SCALED_UNIFORM.spelling == "user_initializers:scaled_uniform"


def test_the_sweep_runs_it_with_a_parameter_locally_and_on_dask(tmp_path):
    study = build_study({"name": "mine", "root_seed": 1},
                        {"init": ["user_initializers:scaled_uniform:factor=2.0", "user_initializers:copy_lecun"],
                         "activation": ["relu"], "depth": [3], "width": [16], "batch": [8], "seeds": 1})
    cells = expand(study)
    assert [c.init.label for c in cells] == ["user_initializers:scaled_uniform:factor=2.0", "user_initializers:copy_lecun"]
    for kind in ("local", "dask"):
        outcome = run_study(study, tmp_path / kind, executor=kind, workers=2, progress=False)
        assert outcome.failed == [] and outcome.done == 2
        frame = load(tmp_path / kind)
        for cell in cells:
            alone = propagate(**cell.propagate_arguments(study.root_seed))
            mine = frame[frame.key == cell.key].sort_values("layer")
            np.testing.assert_array_equal(mine["fwd_var"].to_numpy(), alone["fwd_var"].to_numpy())


def test_the_cli_rejects_a_module_without_the_initializer(tmp_path):
    env = {**__import__("os").environ, "PYTHONPATH": str(TESTS)}
    done = subprocess.run([sys.executable, "-m", "fastinit.sweep", "--init", "user_initializers:he_ish",
                           "--out", str(tmp_path / "bad")], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "module 'user_initializers' does not register an initializer 'he_ish'" in done.stderr
    assert "'copy_flax', 'copy_lecun', 'scaled_uniform'" in done.stderr


@pytest.mark.parametrize("args, kwargs, error, match", [
    (("bad_var", lambda fi, fo: 2.0 / fi, "uniform", lambda fi, fo: math.sqrt(2.0 / fi)), {}, ValueError,
     r"the uniform draw with scale\(16, 16\) = 0.353553 has variance 0.0416667, but variance\(16, 16\) declares 0.125"),
    (("bad_dist", lambda fi, fo: 1.0, "cauchy", lambda fi, fo: 1.0), {}, ValueError, "distribution"),
    (("bad_scale", lambda fi, fo: 1.0, "normal", lambda fi, fo: -1.0), {}, ValueError, "must be finite and > 0"),
    (("he_normal", lambda fi, fo: 1.0, "normal", lambda fi, fo: 1.0), {}, ValueError, "already a built-in"),
    (("copy_lecun", lambda fi, fo: 1.0, "normal", lambda fi, fo: 1.0), {}, ValueError,
     "registered by 'user_initializers' with other functions"),
    (("not_callable", 0.5, "normal", lambda fi, fo: 1.0), {}, TypeError, "variance must be a function"),
    (("bad_param", lambda fi, fo, k: 1.0, "normal", lambda fi, fo, k: 1.0), {"params": {"k": "two"}}, TypeError,
     "parameter 'k'"),
])
def test_bad_registrations_are_clear_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        register(*args, **kwargs)
    assert args[0] not in USER_INITIALIZERS or args[0] == "copy_lecun"
