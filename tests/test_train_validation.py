"""fastinit.train.run bad input: ValueError/TypeError whose one-line message names parameter, value and fix."""

from __future__ import annotations

import pytest

from fastinit.train import make_task, run
from fastinit.train.tasks import TASKS

GOOD = dict(depth=2, width=8, task="spirals", epochs=1, lr=0.1, batch=16)


def _call(**changes):
    kwargs = {**GOOD, **changes}
    init = kwargs.pop("init", "he_normal")
    activation = kwargs.pop("activation", "relu")
    return lambda: run(init, activation, **kwargs)


def _cases():
    yield "lr-zero", _call(lr=0.0), ValueError, ["lr", "0.0", "> 0"]
    yield "lr-negative", _call(lr=-1), ValueError, ["lr", "-1"]
    yield "lr-nan", _call(lr=float("nan")), ValueError, ["lr", "nan"]
    yield "lr-string", _call(lr="0.1"), TypeError, ["lr", "'0.1'"]
    yield "epochs-zero", _call(epochs=0), ValueError, ["epochs", "0", "[1,"]
    yield "epochs-float", _call(epochs=2.0), TypeError, ["epochs", "2.0"]
    yield "depth-zero", _call(depth=0), ValueError, ["depth", "0"]
    yield "width-negative", _call(width=-3), ValueError, ["width", "-3"]
    yield "batch-zero", _call(batch=0), ValueError, ["batch", "0"]
    yield "batch-one-batchnorm", _call(batch=1, batchnorm=True), ValueError, ["batch", "1", ">= 2"]
    yield "seed-negative", _call(seed=-1), ValueError, ["seed", "-1"]
    yield "task-typo", _call(task="spiral"), ValueError, ["task", "'spiral'", "did you mean 'spirals'"]
    yield "task-type", _call(task=3), ValueError, ["task", "3"]
    yield "init-typo", _call(init="he_nomal"), ValueError, ["init", "did you mean 'he_normal'"]
    yield "activation-typo", _call(activation="rellu"), ValueError, ["activation", "did you mean 'relu'"]
    yield "option-typo", _call(momentun=0.5), TypeError, ["momentun", "did you mean 'momentum'"]
    yield "momentum-one", _call(momentum=1.0), ValueError, ["momentum", "1.0", "[0, 1)"]
    yield "momentum-negative", _call(momentum=-0.1), ValueError, ["momentum", "-0.1"]
    yield "clip-zero", _call(clip_norm=0.0), ValueError, ["clip_norm", "0.0"]
    yield "optimizer-unknown", _call(optimizer="adagrad"), ValueError, ["optimizer", "'adagrad'", "sgd", "adam", "adamw"]
    yield "optimizer-typo", _call(optimizer="adamm"), ValueError, ["optimizer", "did you mean 'adam'"]
    yield "weight-decay-negative", _call(weight_decay=-0.1), ValueError, ["weight_decay", "-0.1", ">= 0"]
    yield "weight-decay-adam-negative", _call(optimizer="adamw", weight_decay=-1e-4), ValueError, ["weight_decay", "-0.0001"]
    yield "beta1-one", _call(optimizer="adam", betas=(1.0, 0.999)), ValueError, ["betas[0]", "1.0", "[0, 1)"]
    yield "beta2-negative", _call(optimizer="adam", betas=(0.9, -0.5)), ValueError, ["betas[1]", "-0.5", ">= 0"]
    yield "betas-not-a-pair", _call(optimizer="adam", betas=0.9), TypeError, ["betas", "0.9", "pair"]
    yield "eps-zero", _call(optimizer="adam", eps=0.0), ValueError, ["eps", "0.0", "> 0"]
    yield "eps-negative", _call(optimizer="adamw", eps=-1e-8), ValueError, ["eps", "-1e-08"]
    yield "momentum-with-adam", _call(optimizer="adam", momentum=0.5), ValueError, ["momentum", "0.5", "'sgd'", "betas[0]"]
    yield "betas-with-sgd", _call(betas=(0.9, 0.99)), ValueError, ["betas", "optimizer='sgd'"]
    yield "eps-with-sgd", _call(eps=1e-6), ValueError, ["eps", "1e-06", "optimizer='sgd'"]
    yield "batchnorm-type", _call(batchnorm="yes"), TypeError, ["batchnorm", "'yes'"]
    yield "residual-zero", _call(residual=0.0), ValueError, ["residual", "0.0"]
    yield "dtype", _call(dtype="float16"), ValueError, ["dtype", "float16"]
    yield "gemm", _call(gemm="mkl"), ValueError, ["gemm", "'mkl'"]
    yield "stream-negative", _call(stream=-2), ValueError, ["stream", "-2"]
    yield "init-params-type", _call(init_params=[1]), TypeError, ["init_params", "[1]"]
    yield "init-param-unknown", _call(init_params={"stdd": 1}), TypeError, ["stdd"]
    yield "activation-param-bad", _call(activation="elu", activation_params={"alpha": -1.0}), ValueError, ["alpha", "-1.0"]
    yield "task-param-unknown", _call(task_params={"n_trian": 5}), TypeError, ["n_trian", "did you mean 'n_train'"]
    # Every declared task parameter with the invalid values its constraint names.
    for name, task in TASKS.items():
        for key, (_, constraint) in task.params.items():
            for bad in constraint.invalid_examples():
                yield (f"task-{name}-{key}-{bad!r}", lambda name=name, key=key, bad=bad: make_task(name, **{key: bad}),
                       None, [key, str(bad)])


CASES = list(_cases())


@pytest.mark.parametrize("label, call, error, fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_one_line_error(label, call, error, fragments):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    if error is not None:
        assert info.type is error
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (label, message)
