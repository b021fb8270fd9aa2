"""The layer kernels: jitted functions over preallocated arrays, shared by propagate and train.

Modules, one concern each, bottom up:

* :mod:`~fastinit._kernels.records` -- the :class:`LayerConfig` and :class:`Workspace`
  records that cross the Python/kernel boundary, and the columns of ``stats``;
* :mod:`~fastinit._kernels.draw` -- weight draws (any layer's, again, in shares);
* :mod:`~fastinit._kernels.orthogonal` -- the orthogonal draw (QR), a separate ``cfunc`` the
  kernels call through its address, so that it compiles only for nets that use it;
* :mod:`~fastinit._kernels.blocks` -- row blocks, lanes and parts, and the elementwise
  passes over one block (activation with statistics, backprop through phi'), and the same
  passes over any rows without statistics (``activate_rows``, as :mod:`fastinit.train` uses them);
* :mod:`~fastinit._kernels.reduce` -- fixed-order totals and the slow path for
  non-finite or out-of-range sums;
* :mod:`~fastinit._kernels.norm` -- batch normalisation forward and backward;
* :mod:`~fastinit._kernels.products` -- matrix products through BLAS, or by loops that
  round every output position the same way (exact symmetry in float32);
* :mod:`~fastinit._kernels.layer` -- one layer forward / backward for every worker;
* :mod:`~fastinit._kernels.walk` -- the checkpointed walk: its forward and backward passes and
  :func:`run`, which runs them on the team (:mod:`fastinit._team`).

Scales.  Arrays hold *scaled* values; the true value is ``exp(log_scale) * stored``
with the log scale kept in float64 beside them.  Forward (for positively homogeneous
activations): after each layer the activations are divided by their RMS and the RMS
goes into the log scale -- exact because ``phi(c z) = c phi(z)`` for ``c > 0``; bias
is divided by the same scale.  Backward: the gradient is linear in the readout
gradient, so it can always be rescaled the same way (and is, unless ``numerics="raw"``).
Batch norm is scale-invariant, so the forward scale resets to 1 after it.

Statistics accumulate in float64 in the same pass that applies the activation (or
the derivative, backward).  The batch is cut into ``N_BLOCKS`` fixed row blocks, each
with its own float64 accumulator per *column* (``acc[block, quantity, column]``): the
inner loop over columns then carries no dependency from one element to the next, so
LLVM vectorises it without reassociating anything.  Blocks are reduced serially in a
fixed order.  Non-finite entries make a total non-finite; only then (or when a sum of
squares is 0) a scalar pass counts them (the sums are then NaN: not known) or, if every
entry is finite and only float64's range was left, sums again in a power-of-two unit.

Threads.  :func:`~fastinit._kernels.walk.run` starts ``n_workers`` workers once per pass (:mod:`fastinit._team`);
they walk the layers together and meet at a spin barrier (:mod:`fastinit._sync`) between
phases, because waking sleeping threads per phase costs ~45 us each on the project
machine, more than a width-256 layer.  Work is cut by the shapes only,
never by the number of workers, so results do not depend on the thread count:

* *lanes*: the batch is cut into ``n_lanes`` row ranges, each a union of row blocks.
  A lane's forward GEMM, activation and statistics, and its backward derivative, GEMM
  and rescaling, run on its rows while they are in cache; every GEMM is a
  single-threaded BLAS call (the caller limits BLAS to one thread).
* *parts*: weight gradients and batch norm are cut by units into ``n_lanes`` parts
  (batch norm needs whole columns; a weight-gradient row sums over the whole batch).
* weight draws are cut into the sampler's chunks (:func:`fastinit.rng.fill_chunk`).

Worker ``k`` always takes lanes and parts ``k, k + n_workers, ...``; worker 0 alone
reduces statistics and writes ``stats``, and hands scalars to the others through a
small shared array.

Boundary.  :func:`~fastinit._kernels.walk.run` takes ``n_workers`` and two records, :class:`LayerConfig` (what
the kernels read) and :class:`Workspace` (every array they read or write), built by
``fastinit.propagate.Plan``; the layer functions take the same records.  About half of
a cold compile is LLVM re-optimising every callee at each caller (numba links a callee's
code into each caller's module), the rest numba typing and lowering each function (measured
on a 2-core AMD EPYC: numba's ``llvm_lock`` timers), so the code under the walk's passes is kept
small: no slice assignments (numba compiles an error-message formatter into them), no literal
constant arguments (each literal compiles a kernel's own copy), the orthogonal draw behind an
address (:mod:`~fastinit._kernels.orthogonal`); and a cold compile runs its two layer
subtrees in two processes (:mod:`fastinit._compile_ahead`).
"""
