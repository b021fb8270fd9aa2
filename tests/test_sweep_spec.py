"""Study specs and cells: parsing, presets, canonical choices and stable keys."""

from __future__ import annotations

import hashlib
import json

import pytest

from fastinit import ACTIVATIONS, INITIALIZERS
from fastinit.sweep import StudyError, build_study, expand, read_toml
from fastinit.sweep.spec import AXES, PRESETS, preset

SEED_NOTE_INITS = {"uniform", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform"}


def small(**overrides):
    base = {"init": ["he_normal", "xavier_normal"], "activation": ["relu", "tanh"], "depth": [4], "width": [8],
            "batch": [4], "seeds": 2}
    return build_study({"name": "t"}, {**base, **overrides})


def test_training_preset_compares_he_xavier_too_large_and_zero_with_and_without_clipping():
    study = build_study(preset("training"))
    assert {c.label for c in study.axes["init"]} == {"he_normal", "xavier_normal", "normal:std=0.5", "zeros"}
    assert study.axes["task"] == ("spirals",) and set(study.axes["clip_norm"]) == {0.0, 1.0}
    assert all(cell.trains for cell in expand(study))


@pytest.mark.parametrize("name", ["default", "paper"])
def test_presets_are_valid_studies(name):
    study = build_study(preset(name))
    assert study.name == name
    labels = {choice.label for choice in study.axes["init"]}
    names = {choice.name for choice in study.axes["init"]}
    assert SEED_NOTE_INITS <= labels
    assert "zeros" in names and {"normal:std=0.01", "normal:std=0.5"} <= labels  # the classic failures
    assert {c.name for c in study.axes["activation"]} <= set(ACTIVATIONS)


def test_default_study_matches_the_design():
    study = build_study(read_toml("default"))
    acts = [choice.name for choice in study.axes["activation"]]
    assert acts == ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "gelu", "silu"]
    assert study.axes["depth"] == (100,) and study.axes["width"] == (256,)
    assert len(expand(study)) == 8 * 7 * study.seeds


def test_choice_strings_and_tables_parse_to_the_same_cell():
    a = build_study({"axes": {"init": ["normal:std=0.01"]}})
    b = build_study({"axes": {"init": [{"name": "normal", "std": 0.01}]}})
    assert a.axes["init"] == b.axes["init"]
    assert a.axes["init"][0].label == "normal:std=0.01"
    assert dict(a.axes["init"][0].params) == {"std": 0.01}


def test_defaults_are_filled_in_so_spellings_of_one_cell_share_its_key():
    plain = expand(small(init=["he_normal"]))
    spelled = expand(small(init=["he_normal:mode=fan_in,nonlinearity=leaky_relu"]))
    assert [c.key for c in plain] == [c.key for c in spelled]
    # and listing both spellings is one value, not two
    assert len(small(init=["he_normal", "he_normal:mode=fan_in"]).axes["init"]) == 1


def test_activation_parameters():
    study = small(activation=["leaky_relu:slope=0.2", "leaky_relu"])
    params = [dict(c.params) for c in study.axes["activation"]]
    assert params == [{"slope": 0.2}, {"slope": ACTIVATIONS["leaky_relu"].default_param}]


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "mine"\nroot_seed = 7\n[axes]\ndepth = [10, 20]\nwidth = [32]\nseeds = 4\n')
    study = build_study(read_toml(path), {"depth": ["5"], "seeds": "2"})
    assert study.axes["depth"] == (5,) and study.axes["width"] == (32,)
    assert (study.name, study.root_seed, study.seeds) == ("mine", 7, 2)


def test_keys_are_hashes_of_the_cell_alone():
    """Independent recomputation of the documented key: BLAKE2b-64 of repr(('fastinit.sweep.cell', identity))."""
    for cell in expand(small()):
        identity = json.loads(cell.identity())
        assert identity["depth"] == cell.depth and identity["seed"] == cell.seed
        digest = hashlib.blake2b(repr(("fastinit.sweep.cell", cell.identity())).encode(), digest_size=8).digest()
        assert cell.key == f"{int.from_bytes(digest, 'little'):016x}"


def test_adding_axis_values_never_changes_existing_keys():
    before = {(c.init.label, c.activation.label, c.depth, c.seed): c.key for c in expand(small())}
    grown = small(init=["lecun_normal", "he_normal", "xavier_normal"], activation=["tanh", "gelu", "relu"],
                  depth=[4, 9], seeds=3)
    after = {(c.init.label, c.activation.label, c.depth, c.seed): c.key for c in expand(grown)}
    assert all(after[name] == key for name, key in before.items())
    assert len(set(after.values())) == len(after)  # and every cell has its own stream


def test_every_registry_entry_can_be_an_axis_value():
    inits = [name if name != "constant" else "constant:value=0.1" for name in INITIALIZERS]
    study = build_study({"axes": {"init": inits, "activation": list(ACTIVATIONS)}})
    assert len(study.axes["init"]) == len(INITIALIZERS) and len(study.axes["activation"]) == len(ACTIVATIONS)


@pytest.mark.parametrize("overrides, fragment", [
    ({"init": ["he_nromal"]}, "did you mean 'he_normal'"),
    ({"init": ["normal:stdev=0.1"]}, "'stdev'"),
    ({"init": ["normal:std"]}, "key=value"),
    ({"init": ["constant"]}, "'value'"),
    ({"activation": ["rleu"]}, "did you mean 'relu'"),
    ({"activation": ["relu:slope=0.2"]}, "'slope'"),
    ({"depth": []}, "depth is an empty axis"),
    ({"depth": ["0"]}, "depth must be an integer >= 1, got 0"),
    ({"width": ["2.5"]}, "width must be an integer"),
    ({"batch": ["0"]}, "batch must be an integer >= 1"),
    ({"batch": ["1", "8"], "batchnorm": ["false", "true"]}, "batchnorm needs batch >= 2"),
    ({"seeds": "0"}, "seeds must be an integer >= 1"),
    ({"seeds": "many"}, "seeds must be an integer"),
    ({"dtype": ["float16"]}, "dtype must be one of"),
    ({"numerics": ["exact"]}, "numerics must be one of"),
    ({"residual": ["-1"]}, "residual must be"),
    ({"batchnorm": ["maybe"]}, "batchnorm must be true or false"),
    ({"root_seed": "-3"}, "seed must be an integer in"),
    ({"name": "a/b"}, "name must be"),
])
def test_bad_values_name_the_parameter_and_the_value(overrides, fragment):
    with pytest.raises(StudyError) as caught:
        small(**overrides)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("text, fragment", [
    ("[axes]\ndepht = [3]\n", "unknown key 'depht' (did you mean 'depth'?)"),
    ("nmae = 'x'\n", "unknown key 'nmae' (did you mean 'name'?)"),
    ("[axes\ndepth = [3]\n", "not valid TOML"),
    ("axes = 3\n", "axes must be a table"),
])
def test_bad_toml_files(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(StudyError) as caught:
        build_study(read_toml(path))
    assert fragment in str(caught.value)


def test_missing_file():
    with pytest.raises(StudyError, match="does not exist"):
        read_toml("no/such/study.toml")


def test_axes_cover_every_propagate_option_the_sweep_offers():
    assert set(AXES) == {"init", "activation", "depth", "width", "batch", "bias_std", "dtype", "numerics",
                         "residual", "batchnorm", "norm", "norm_at", "task", "epochs", "lr", "optimizer", "momentum", "beta1", "beta2",
                         "eps", "weight_decay", "clip_norm"}
    assert set(PRESETS) == {"default", "paper", "training", "digits", "modern"}


def test_a_cell_key_is_pinned_across_versions():
    """Results on disk are found by key: a change to the identity format would orphan them all."""
    cell = expand(build_study({"name": "pin"}, {"init": ["he_normal"], "activation": ["relu"], "depth": [10],
                                                "width": [64], "batch": [32], "seeds": 1}))[0]
    assert cell.key == "6ca79f578a7f6cb8"  # fastinit 0.1.0, format fastinit-sweep/1


def test_grids_make_a_study_the_union_of_their_grids():
    raw = {"name": "g", "axes": {"width": [8], "batch": [4], "depth": [3]},
           "grids": [{"init": ["he_normal", "zeros"], "seeds": 2},
                     {"init": ["he_normal"], "activation": ["tanh", "relu"], "depth": [3, 5]}]}
    study = build_study(raw)
    cells = expand(study)
    points = {(c.init.label, c.activation.label, c.depth, c.seed) for c in cells}
    # Grid 1: 2 inits x relu x depth 3 x 2 seeds; grid 2: he x 2 activations x 2 depths x 1 seed, whose
    # (he_normal, relu, 3, seed 0) is grid 1's cell and runs once.
    expected = {(i, "relu", 3, s) for i in ("he_normal", "zeros") for s in (0, 1)} | {
        ("he_normal", a, d, 0) for a in ("tanh", "relu") for d in (3, 5)}
    assert points == expected and len(cells) == len(expected) == 7
    assert [g.seeds for g in study.grids] == [2, 1] and study.seeds == 2
    assert [c.label for c in study.axes["init"]] == ["he_normal", "zeros"] and study.axes["depth"] == (3, 5)
    assert [grid["axes"]["depth"] for grid in study.to_json()["grids"]] == [[3], [3, 5]]


def test_flags_override_every_grid():
    raw = {"axes": {"width": [8], "batch": [4]},
           "grids": [{"depth": [3], "seeds": 4}, {"depth": [5], "activation": ["tanh"]}]}
    study = build_study(raw, {"depth": ["2"], "seeds": "1"})
    assert [g.axes["depth"] for g in study.grids] == [(2,), (2,)] and [g.seeds for g in study.grids] == [1, 1]


def test_a_single_grid_study_describes_itself_as_before():
    """Manifests of studies without [[grids]] keep their old form (resuming compares them)."""
    described = small().to_json()
    assert set(described) == {"name", "root_seed", "seeds", "axes"}


@pytest.mark.parametrize("grids, message", [
    ({"depht": [3]}, r"\[\[grids\]\] table 1 has an unknown key 'depht'.*depth"),
    ([], "grids must be one or more"),
    ([{"depth": [0]}], "depth"),
    ([{"seeds": 0}], "seeds"),
    ([{}, {"batch": [1], "batchnorm": [True]}], "batchnorm needs batch >= 2"),
])
def test_bad_grids_are_study_errors(grids, message):
    with pytest.raises(StudyError, match=message):
        build_study({"grids": grids if isinstance(grids, list) else [grids]})
