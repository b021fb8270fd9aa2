"""``fastinit.train``: Numba-jitted SGD training of deep MLPs, same registries and streams.

* :func:`run` -- train one net on a built-in task; a long frame, one row per (epoch, layer);
* :class:`Plan` -- a validated run (``Plan.build``, the signature of :func:`run`) and the kernel
  records it makes; :func:`build_network` draws its weights into a :class:`Network`;
* :func:`make_task`, :data:`TASKS` -- the synthetic tasks (``teacher``, ``spirals``, ``gaussians``);
* :func:`worked_example` -- the seed notes' exploding-update example, scalar and network-level.

Modules: ``tasks`` (data), ``_kernels`` (the records; forward and backward over the shared layer
kernels of :mod:`fastinit._kernels`; loss, update, epoch loop),
``run`` (validation and the frame), ``worked_example``.
"""

from fastinit.train.run import COLUMNS, DISTINCT_RTOL, Network, Plan, build_network, run
from fastinit.train.tasks import TASKS, Dataset, make_task
from fastinit.train.worked_example import scalar_chain, worked_example

__all__ = ["COLUMNS", "DISTINCT_RTOL", "Dataset", "Network", "Plan", "TASKS", "build_network", "make_task", "run",
           "scalar_chain", "worked_example"]
