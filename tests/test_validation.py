"""Bad input: every parameter of every public function, generated from declared constraints.

Each case must raise ValueError or TypeError whose message names the parameter and
the offending value.
"""

from __future__ import annotations

import pandas as pd
import pytest

import fastinit
from fastinit import ACTIVATIONS, INITIALIZERS, fans, gain, get_activation, get_initializer, propagate, rng, sample
from fastinit._validation import check_name, did_you_mean


def _cases():
    good = ("he_normal", (4, 4))
    yield "init-unknown", lambda: sample("he_nomal", (4, 4)), ["init", "he_nomal", "did you mean 'he_normal'"]
    yield "init-type", lambda: sample(3, (4, 4)), ["init", "3"]
    yield "shape-1d", lambda: sample("he_normal", (4,)), ["shape", "2 dimensions"]
    yield "shape-empty", lambda: sample("normal", ()), ["shape"]
    yield "shape-zero", lambda: sample(*good[:1], (4, 0)), ["shape", "0"]
    yield "shape-negative", lambda: sample(*good[:1], (-2, 4)), ["shape", "-2"]
    yield "shape-float", lambda: sample(*good[:1], (4.0, 4)), ["shape", "4.0"]
    yield "shape-type", lambda: sample(*good[:1], None), ["shape", "None"]
    yield "seed-negative", lambda: sample(*good, seed=-1), ["seed", "-1"]
    yield "seed-float", lambda: sample(*good, seed=1.5), ["seed", "1.5"]
    yield "seed-too-big", lambda: sample(*good, seed=2**64), ["seed", str(2**64)]
    yield "seed-string", lambda: sample(*good, seed="1"), ["seed", "'1'"]
    yield "dtype", lambda: sample(*good, dtype="int32"), ["dtype", "int32"]
    yield "unknown-param", lambda: sample(*good, stdd=1.0), ["stdd", "mode"]
    yield "missing-required", lambda: sample("constant", (4, 4)), ["value"]
    # Every declared parameter of every scheme, with the invalid values its constraint names.
    for name, entry in INITIALIZERS.items():
        for key, param in entry.params.items():
            for bad in param.constraint.invalid_examples():
                base = {"value": 0.5} if name == "constant" and key != "value" else {}
                yield (
                    f"{name}-{key}-{bad!r}",
                    lambda name=name, key=key, bad=bad, base=base: sample(name, (4, 4), **base, **{key: bad}),
                    [key, repr(bad) if isinstance(bad, str) else str(bad)],
                )
    yield "fans-1d", lambda: fans((5,)), ["shape", "2 dimensions"]
    yield "fans-zero", lambda: fans((5, 0)), ["shape", "0"]
    yield "gain-unknown", lambda: gain("relux"), ["activation", "relux", "did you mean 'relu'"]
    yield "gain-param", lambda: gain("elu", -1.0), ["alpha", "-1.0"]
    yield "get_initializer", lambda: get_initializer("xavier"), ["init", "xavier"]
    yield "get_activation", lambda: get_activation("tanhh"), ["activation", "tanhh", "did you mean 'tanh'"]
    # Suggestions compare case-folded names: compared as typed, 'Reluu' is closer to 'elu'.
    yield "activation-capitals", lambda: get_activation("Reluu"), ["activation", "'Reluu'", "did you mean 'relu'"]
    yield "init-capitals", lambda: get_initializer("He_Nromal"), ["init", "'He_Nromal'", "did you mean 'he_normal'"]
    for name, activation in ACTIVATIONS.items():
        yield f"{name}-unknown-param", lambda a=activation: a.resolve_param(beta=1.0), ["beta"]
        if activation.param_name:
            yield f"{name}-param-type", lambda a=activation: a.resolve_param(**{a.param_name: "x"}), [activation.param_name]
    # Random streams.
    yield "rng-seed", lambda: rng.standard_normal(-1, 3), ["seed", "-1"]
    yield "rng-size", lambda: rng.standard_normal(0, -3), ["size", "-3"]
    yield "rng-size-zero", lambda: rng.standard_normal(0, (3, 0)), ["size", "0"]
    yield "rng-size-type", lambda: rng.standard_normal(0, 2.5), ["size"]
    yield "rng-stream", lambda: rng.standard_normal(0, 3, stream=-1), ["stream", "-1"]
    yield "rng-substream", lambda: rng.standard_normal(0, 3, substream=2**31), ["substream", str(2**31)]
    yield "rng-dtype", lambda: rng.standard_normal(0, 3, dtype="float16"), ["dtype", "float16"]
    yield "rng-low-high", lambda: rng.uniform(0, 3, low=1.0, high=1.0), ["high", "low"]
    yield "rng-low-nan", lambda: rng.uniform(0, 3, low=float("nan")), ["low", "nan"]
    yield "rng-bound", lambda: rng.truncated_normal(0, 3, bound=0.0), ["bound", "0.0"]
    # propagate: every argument and option.
    prop = lambda **kw: propagate(**{"init": "he_normal", "activation": "relu", "depth": 3, "width": 8, "batch": 4, **kw})  # noqa: E731
    yield "prop-init", lambda: prop(init="he_norml"), ["init", "he_norml", "did you mean"]
    yield "prop-activation", lambda: prop(activation="rleu"), ["activation", "rleu", "did you mean 'relu'"]
    yield "prop-depth-zero", lambda: prop(depth=0), ["depth", "0"]
    yield "prop-depth-float", lambda: prop(depth=2.0), ["depth", "2.0"]
    yield "prop-width-zero", lambda: prop(width=0), ["width", "0"]
    yield "prop-width-list", lambda: prop(width=[8, 8]), ["width", "depth=3", "2"]
    yield "prop-batch", lambda: prop(batch=0), ["batch", "0"]
    yield "prop-batch-one-batchnorm", lambda: prop(batch=1, batchnorm=True), ["batchnorm", "batch=1", ">= 2"]
    yield "prop-seed", lambda: prop(seed=-2), ["seed", "-2"]
    yield "prop-dtype", lambda: prop(dtype="float16"), ["dtype", "float16"]
    yield "prop-bias", lambda: prop(bias_std=-0.1), ["bias_std", "-0.1"]
    yield "prop-residual", lambda: prop(residual=-1.0), ["residual", "-1.0"]
    yield "prop-residual-widths", lambda: prop(width=[8, 16, 8], residual=0.5), ["residual", "equal widths"]
    yield "prop-batchnorm", lambda: prop(batchnorm="yes"), ["batchnorm", "'yes'"]
    yield "prop-norm", lambda: prop(norm="group"), ["norm", "group"]
    yield "prop-norm-at", lambda: prop(norm="layer", norm_at="input"), ["norm_at", "input"]
    yield "prop-norm-at-without-norm", lambda: prop(norm_at="branch", residual=1.0), ["norm_at='branch'", "needs a norm"]
    yield "prop-branch-without-residual", lambda: prop(norm="layer", norm_at="branch"), ["norm_at='branch'", "residual"]
    yield "prop-output-without-residual", lambda: prop(norm="batch", norm_at="output"), ["norm_at='output'", "residual"]
    yield "prop-batchnorm-conflict", lambda: prop(batchnorm=True, norm="layer"), ["batchnorm=True", "norm='layer'"]
    yield "prop-batch-one-batch-norm", lambda: prop(batch=1, norm="batch"), ["norm='batch'", "batch=1", ">= 2"]
    yield "prop-input-std", lambda: prop(input_std=0.0), ["input_std", "0.0"]
    yield "prop-input-corr", lambda: prop(input_corr=1.5), ["input_corr", "1.5"]
    yield "prop-numerics", lambda: prop(numerics="exact"), ["numerics", "exact"]
    yield "prop-init-params", lambda: prop(init_params={"std": 1.0}), ["std"]
    yield "prop-activation-params", lambda: prop(activation="leaky_relu", activation_params={"alpha": 1.0}), ["alpha", "slope"]
    yield "prop-stream", lambda: prop(stream=-1), ["stream", "-1"]
    yield "prop-budget", lambda: prop(memory_budget=0), ["memory_budget", "0"]
    yield "prop-unknown-option", lambda: prop(residul=0.5), ["residul", "did you mean 'residual'"]
    yield "philox-words", lambda: rng.philox4x32([0, 0, 0], [0, 0]), ["counter", "key"]


CASES = list(_cases())


@pytest.mark.parametrize(("call", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_named(call, fragments):
    with pytest.raises((ValueError, TypeError)) as excinfo:
        call()
    message = str(excinfo.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_public_api_has_docstrings():
    import inspect

    public = [getattr(fastinit, name) for name in fastinit.__all__] + [rng.standard_normal, rng.uniform, rng.truncated_normal, rng.stream_id, rng.philox4x32]
    for obj in public:
        if callable(obj):
            doc = inspect.getdoc(obj) or ""
            assert "Parameters" in doc or "Returns" in doc or obj in (rng.uniform, rng.truncated_normal), obj


@pytest.mark.parametrize(("spelling", "name"), [("ReLU", "relu"), ("Relu", "relu"), ("RELU", "relu"),
                                                ("relu", "relu"), ("Swish", "silu"), ("Leaky_ReLU", "leaky_relu")])
def test_activation_names_match_in_any_case(spelling, name):
    assert get_activation(spelling) is ACTIVATIONS[name]  # aliases too (swish is silu)


@pytest.mark.parametrize("spelling", ["He_Normal", "HE_NORMAL", "he_normal"])
def test_initializer_names_match_in_any_case(spelling):
    assert get_initializer(spelling) is INITIALIZERS["he_normal"]


def test_a_name_in_capitals_gives_the_same_numbers_as_the_registered_name():
    lower = propagate("he_normal", "tanh", depth=3, width=8, batch=4, seed=1)
    upper = propagate("He_Normal", "TANH", depth=3, width=8, batch=4, seed=1)
    pd.testing.assert_frame_equal(lower, upper, check_exact=True)
    assert (upper.attrs["init"], upper.attrs["activation"]) == ("he_normal", "tanh")


def test_suggestions_ignore_case_and_names_differing_only_in_case_are_ambiguous():
    assert did_you_mean("Relu", ["elu", "relu"]) == " (did you mean 'relu'?)"
    assert did_you_mean("ELU", ["elu", "relu"]) == " (did you mean 'elu'?)"
    assert check_name("act", "Relu", ["elu", "relu"]) == "relu"
    assert check_name("act", "Relu", ["relu", "Relu"]) == "Relu"  # an exact match wins
    with pytest.raises(ValueError, match="act must be one of"):
        check_name("act", "RELU", ["relu", "Relu"])  # two registered names differ only in case
