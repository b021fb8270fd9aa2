"""fastinit.activations.register: a user's activation works wherever a built-in does.

Held against independent computations: the user's own Python functions (for the compiled
scalars), the built-ins the user module repeats bit for bit (``copy_relu`` through propagate,
train and the sweep; ``copy_erf`` through the theory layer, whose erf has closed forms), the
NumPy twin of propagate, and relu's closed-form gain sqrt(2).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import user_activations as user
from analysis import theory
from fastinit import gain, get_activation, propagate
from fastinit.activations import REGISTERED, USER_ACTIVATIONS, register
from fastinit.propagate import Plan
from fastinit.sweep import build_study, expand, load, run_study
from fastinit.train import run as train_run

import naive

TESTS = Path(__file__).parent
GRID = np.concatenate([np.linspace(-30.0, 30.0, 601), [-1e-300, 0.0, 1e-300, 700.0, -700.0]])


def _ulps(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b) / np.spacing(np.maximum(np.abs(a), np.abs(b)))


@pytest.mark.parametrize("record, phi, dphi", [(user.MISH, user.mish, user.mish_slope),
                                                (user.COPY_ERF, user.erf, user.erf_slope)])
def test_compiled_scalars_equal_the_users_python_functions(record, phi, dphi):
    # numba's math calls the same libm as Python's; a few ulps allow for LLVM's own exp/log.
    assert record.code == REGISTERED and record.module == "user_activations"
    expected_phi = [phi(float(x)) for x in GRID]
    expected_dphi = [dphi(float(x)) for x in GRID]
    assert _ulps(record.phi_np(GRID), expected_phi).max() <= 4
    assert _ulps(record.dphi_np(GRID), expected_dphi).max() <= 4
    assert np.isnan(record.phi_np([np.nan])[0]) and np.isnan(record.dphi_np([np.nan])[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("numerics", ["rescaled", "raw"])
def test_a_registered_copy_of_relu_propagates_the_builtins_bits(dtype, numerics):
    common = dict(depth=12, width=48, batch=16, seed=5, dtype=dtype, numerics=numerics, bias_std=0.1)
    mine = propagate("he_normal", "copy_relu", **common)
    builtin = propagate("he_normal", "relu", **common)
    pd.testing.assert_frame_equal(mine, builtin, check_exact=True)


def test_a_registered_activation_matches_the_numpy_twin():
    plan = Plan.build("he_normal", "user_activations:user_mish", depth=8, width=32, batch=16, seed=2, dtype="float64",
                      numerics="raw")
    frame = propagate("he_normal", "user_activations:user_mish", depth=8, width=32, batch=16, seed=2,
                      dtype="float64", numerics="raw")
    twin = naive.propagate(plan, *plan.inputs())
    for column in ("fwd_var", "act_second_moment", "grad_var", "wgrad_var"):
        np.testing.assert_allclose(frame[column], twin[column], rtol=1e-12, err_msg=column)


def test_nan_and_overflow_are_data_not_crashes():
    frame = propagate("normal", "user_mish", depth=60, width=16, batch=8, seed=0, numerics="raw", dtype="float32",
                      init_params={"std": 3.0})
    assert frame["nonfinite"].iloc[-1] > 0 and frame.attrs["first_overflow_layer"] is not None  # |z| passed 3.4e38: recorded


def test_train_runs_a_registered_copy_of_relu_as_the_builtin():
    common = dict(depth=3, width=16, task="spirals", epochs=2, lr=0.05, batch=32, seed=1)
    pd.testing.assert_frame_equal(train_run("he_normal", "copy_relu", **common), train_run("he_normal", "relu", **common),
                                  check_exact=True)


def test_gain_is_the_second_moment_gain():
    assert gain("copy_relu") == pytest.approx(math.sqrt(2.0), rel=1e-10)  # E[relu(z)^2] = 1/2


@pytest.mark.parametrize("function, args", [
    ("gaussian_moment", lambda a: (a, np.array([0.3, 1.0, 7.0]), "dphi2")),
    ("gaussian_moment", lambda a: (a, np.array([0.3, 1.0, 7.0]), "phi2")),
    ("length_map", lambda a: (np.array([0.5, 2.0]), a, 1.7, 0.05)),
    ("fixed_point", lambda a: (a, 1.7, 0.05)),
    ("chi1", lambda a: (a, 1.7, 0.05)),
    ("correlation_map", lambda a: (np.array([0.1, 0.6]), 1.3, a, 1.7, 0.05)),
    ("critical_sigma_w2", lambda a: (a, 0.05)),
])
def test_theory_by_quadrature_matches_erf_closed_forms(function, args):
    mine = getattr(theory, function)(*args("copy_erf"))
    closed = getattr(theory, function)(*args("erf"))
    np.testing.assert_allclose(mine, closed, rtol=1e-9, atol=1e-14)


def test_predict_matches_the_builtin():
    mine = theory.predict("he_normal", "copy_erf", depth=20, width=64, bias_std=0.1)
    closed = theory.predict("he_normal", "erf", depth=20, width=64, bias_std=0.1)
    pd.testing.assert_frame_equal(mine, closed, rtol=1e-9)


def test_module_spelling_and_pickling():
    assert get_activation("user_activations:user_mish") is user.MISH
    assert user.MISH.spelling == "user_activations:user_mish"
    import pickle

    assert pickle.loads(pickle.dumps(user.MISH)) is user.MISH


# ----------------------------------------------------------------------------- the sweep


def test_the_sweep_runs_it_locally_and_on_dask_with_the_builtins_numbers(tmp_path):
    study = build_study({"name": "mine", "root_seed": 3},
                        {"init": ["he_normal"], "activation": ["user_activations:copy_relu"], "depth": [4],
                         "width": [16], "batch": [8], "seeds": 2})
    cells = expand(study)
    for kind in ("local", "dask"):  # spawned processes and Dask workers: each imports user_activations
        outcome = run_study(study, tmp_path / kind, executor=kind, workers=2, progress=False)
        assert outcome.failed == [] and outcome.done == len(cells)
        frame = load(tmp_path / kind)
        assert set(frame.activation) == {"user_activations:copy_relu"}
        for cell in cells:
            # The same cell with the built-in relu in its place (same stream, so the same weights).
            builtin = propagate(**{**cell.propagate_arguments(study.root_seed), "activation": "relu"})
            mine = frame[frame.key == cell.key].sort_values("layer")
            for column in ("fwd_var", "grad_var", "wgrad_var", "act_second_moment"):
                np.testing.assert_array_equal(mine[column].to_numpy(), builtin[column].to_numpy(), err_msg=column)


def test_a_cells_key_follows_the_functions_source(tmp_path, monkeypatch):
    keys = []
    for version, body in enumerate(["x if x > 0.0 else 0.0", "x if x > 0.0 else 0.0 * x"]):
        module = tmp_path / f"v{version}" / "my_edited.py"
        module.parent.mkdir()
        module.write_text(textwrap.dedent(f"""
            from fastinit.activations import register
            def phi(x):
                return {body}
            def dphi(x):
                return 1.0 if x > 0.0 else 0.0
            register("edited_{version}", phi, dphi)
        """))
        monkeypatch.syspath_prepend(str(module.parent))
        sys.modules.pop("my_edited", None)
        study = build_study({"name": "edited"}, {"activation": [f"my_edited:edited_{version}"], "depth": [2], "seeds": 1})
        cell = expand(study)[0]
        keys.append((cell.key, json.loads(cell.identity())["activation"]))
        USER_ACTIVATIONS.pop(f"edited_{version}")
    sys.modules.pop("my_edited", None)
    assert keys[0][0] != keys[1][0]
    assert keys[0][1][2] != keys[1][1][2]  # the fingerprints differ


def test_the_cli_runs_a_registered_activation_and_rejects_a_module_without_it(tmp_path):
    env = {**__import__("os").environ, "PYTHONPATH": str(TESTS)}
    done = subprocess.run([sys.executable, "-m", "fastinit.sweep", "--activation", "user_activations:user_mish",
                           "--depth", "3", "--width", "8", "--batch", "4", "--seeds", "1", "--no-report",
                           "--out", str(tmp_path / "ok")], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert load(tmp_path / "ok").activation.unique().tolist() == ["user_activations:user_mish"]
    done = subprocess.run([sys.executable, "-m", "fastinit.sweep", "--activation", "user_activations:swishy",
                           "--out", str(tmp_path / "bad")], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "module 'user_activations' does not register an activation 'swishy'" in done.stderr
    done = subprocess.run([sys.executable, "-m", "fastinit.sweep", "--activation", "no_such_module_here:mish",
                           "--out", str(tmp_path / "bad")], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 2 and "cannot import module 'no_such_module_here'" in done.stderr


# ----------------------------------------------------------------------------- bad input


_SCALES = {"a": 2.0}  # a Python dict global: numba cannot type it


def _uncompilable(x):
    return _SCALES["a"] * x


def test_a_function_numba_cannot_compile_is_named():
    with pytest.raises(ValueError, match=r"activation 'bad_one': numba cannot compile phi = _uncompilable \(.*_SCALES"):
        register("bad_one", _uncompilable, user.relu_slope)
    assert "bad_one" not in USER_ACTIVATIONS


@pytest.mark.parametrize("name, phi, dphi, error, match", [
    ("relu", user.relu, user.relu_slope, ValueError, "activation 'relu' is already a built-in activation"),
    ("swish", user.relu, user.relu_slope, ValueError, "already a built-in"),  # an alias
    ("user_mish", user.relu, user.relu_slope, ValueError, "registered by 'user_activations' with other functions"),
    ("2fast", user.relu, user.relu_slope, ValueError, "letters, digits and underscores"),
    ("ok_name", math.tanh, user.relu_slope, TypeError, "phi must be a Python function"),
    ("ok_name", lambda x, y: x, user.relu_slope, TypeError, "must take exactly one argument"),
])
def test_bad_registrations_are_clear_errors(name, phi, dphi, error, match):
    with pytest.raises(error, match=match):
        register(name, phi, dphi)


def test_registering_the_same_functions_again_returns_the_record():
    assert register("user_mish", user.mish, user.mish_slope) is user.MISH


def test_gain_of_mish_by_an_independent_quadrature():
    from scipy import integrate, stats

    second_moment = integrate.quad(lambda z: user.mish(z) ** 2 * stats.norm.pdf(z), -40.0, 40.0, epsabs=1e-13,
                                   epsrel=1e-12, points=[0.0])[0]
    assert gain("user_mish") == pytest.approx(1.0 / math.sqrt(second_moment), rel=1e-9)
    assert gain("user_mish") == pytest.approx(1.4868, abs=5e-5)  # the README's figure
