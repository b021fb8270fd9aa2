"""``python -m fastinit.sweep``: run a study of initializers x activations x shapes x seeds.

With no arguments it runs the default study (``fastinit/sweep/studies/default.toml``)
into ``results/default``.  Exit codes: 0 done, 1 finished with failed cells (listed),
2 bad input (one line naming the parameter, the value and the fix), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from fastinit._validation import check_choice, check_int
from fastinit.sweep import store
from fastinit.sweep.cells import estimate, expand
from fastinit.sweep.executors import EXECUTORS, ExecutorError, default_workers
from fastinit.sweep.runner import run_study
from fastinit.sweep.spec import (AXES, PRESETS, PROPAGATION_AXES, TRAINING_AXES, StudyError, build_study,
                                 parse_int, read_toml)
from fastinit.sweep.summary import training_table

PROG = "python -m fastinit.sweep"
log = logging.getLogger("fastinit.sweep")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except for flags whose default is "the study file's value"."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Bad flags exit 2 with one line, like every other bad input."""

    def error(self, message):
        self.exit(2, f"{PROG}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.split("\n\n")[0],
                     formatter_class=_Formatter,
                     epilog="Axis flags take one or more values and replace that axis of the study file. "
                            "Example: python -m fastinit.sweep --init he_normal normal:std=0.01 "
                            "--activation relu tanh --depth 50 200 --seeds 5 --name mine --out results/mine")
    parser.add_argument("study", nargs="?", default="default",
                        help=f"a study TOML file or a preset ({', '.join(PRESETS)})")
    axes = parser.add_argument_group("axes (each a list; each flag replaces that axis of the study file)")
    for axis in AXES:
        axes.add_argument(f"--{axis.replace('_', '-')}", dest=axis, nargs="+", metavar="VALUE",
                          help=_AXIS_HELP[axis])
    axes.add_argument("--seeds", help="replicates per grid point")
    axes.add_argument("--root-seed", dest="root_seed", help="root of every cell's random stream")
    axes.add_argument("--name", help="study name (default: the study file's)")
    run = parser.add_argument_group("running")
    run.add_argument("--out", help="results directory (default: results/NAME)")
    run.add_argument("--executor", default="local", help=f"one of {', '.join(EXECUTORS)}")
    run.add_argument("--workers", default=None, help="worker processes (default: one per core)")
    run.add_argument("--scheduler", help="address of a running Dask scheduler (with --executor dask)")
    run.add_argument("--dry-run", action="store_true", help="print the cells and an estimate, run nothing")
    run.add_argument("--no-resume", action="store_true", help="recompute cells already in --out")
    run.add_argument("--no-report", action="store_true", help="skip the analysis report at the end")
    noise = run.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="store_true", help="log each step")
    noise.add_argument("-q", "--quiet", action="store_true", help="only errors and the exit status")
    return parser


_AXIS_HELP = {
    "init": "initializers, e.g. he_normal normal:std=0.01 he_normal:mode=fan_out",
    "activation": "activations, e.g. relu tanh leaky_relu:slope=0.2",
    "depth": "layers",
    "width": "units per layer",
    "batch": "examples per batch",
    "bias_std": "bias std (0: no bias)",
    "dtype": "float32 and/or float64",
    "numerics": "rescaled (exact log10 columns) and/or raw",
    "residual": "residual branch scale alpha (0: none)",
    "batchnorm": "true and/or false",
    "norm": "none, batch and/or layer (normalisation; see --norm_at)",
    "norm_at": "preact (before phi), branch (pre-norm residual) and/or output (post-norm residual); combinations without a norm or residual branch are left out",
    "task": "none (propagation) or a training task: teacher, spirals, gaussians, digits",
    "epochs": "training epochs",
    "lr": "learning rate",
    "optimizer": "sgd, adam and/or adamw (torch.optim semantics)",
    "momentum": "SGD momentum in [0, 1)",
    "beta1": "Adam's first-moment decay in [0, 1)",
    "beta2": "Adam's second-moment decay in [0, 1)",
    "eps": "Adam's denominator term (> 0)",
    "weight_decay": "weight decay (>= 0; L2 in the gradient for sgd/adam, decoupled for adamw)",
    "clip_norm": "clip the global gradient norm (0: no clipping)",
}


def main(argv=None) -> int:
    """Run the command line; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as done:  # --help, or a bad flag already reported in one line
        return done.code
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if args.verbose else logging.ERROR if args.quiet else logging.WARNING)
    # Dask logs its cluster's start and shutdown chatter at INFO on its own handlers.
    logging.getLogger("distributed").setLevel(logging.INFO if args.verbose else logging.ERROR)
    try:
        study = build_study(read_toml(args.study), {key: getattr(args, key) for key in
                                                     [*AXES, "seeds", "root_seed", "name"]})
        workers = None if args.workers is None else check_int("workers", parse_int(args.workers), minimum=1)
        check_choice("executor", args.executor, EXECUTORS)
    except (StudyError, ExecutorError, TypeError, ValueError) as error:
        return _bad_input(error)
    out = Path(args.out) if args.out else Path("results") / study.name
    try:
        store.check_directory(out, study.to_json())
    except store.ResultsError as error:
        return _bad_input(error)
    if args.dry_run:
        _print_dry_run(study, expand(study), out, args.executor, workers or default_workers())
        return 0
    try:
        outcome = run_study(study, out, executor=args.executor, workers=workers, scheduler=args.scheduler,
                            resume=not args.no_resume, progress=None if not args.quiet else False,
                            meanwhile=None if args.no_report else _preload_analysis)
    except (store.ResultsError, ExecutorError) as error:
        return _bad_input(error)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished cells are kept in {out}, rerun the same command to resume",
              file=sys.stderr)
        return 130
    if not args.quiet:
        _print_summary(out, outcome)
    if not args.no_report:
        _write_report(out, quiet=args.quiet)
    if outcome.failed:
        print(f"{PROG}: {len(outcome.failed)} of {outcome.cells} cells failed (tracebacks in {out / store.FAILED}); "
              "rerun to retry them:", file=sys.stderr)
        for failure in outcome.failed:
            print(f"  {failure['key']}  {failure['init']} {failure['activation']} depth={failure['depth']} "
                  f"width={failure['width']} seed={failure['seed']}: {failure['error']}", file=sys.stderr)
        return 1
    return 0


def _bad_input(error) -> int:
    print(f"{PROG}: error: {error}", file=sys.stderr)
    return 2


def _print_dry_run(study, cells, out, executor, workers):
    threads = max(1, default_workers() // workers) if executor != "serial" else default_workers()
    print(f"study {study.name!r}: {len(cells)} cells -> {out}")
    applying = _applying_axes(cells)
    for number, grid in enumerate(study.grids, start=1):
        if len(study.grids) > 1:
            print(f" grid {number}:")
        for axis, values in grid.axes.items():
            # Later grids show only the axes on which they differ from the first.
            if axis not in applying or (number > 1 and values == study.grids[0].axes[axis]):
                continue
            shown = [getattr(v, "label", v) for v in values]
            print(f"  {axis:<12} {len(shown):>3} x  {', '.join(map(str, shown))}")
        print(f"  {'seeds':<12} {grid.seeds:>3} x  (root seed {study.root_seed})")
    finished = store.finished_keys(out) if (out / store.MANIFEST).is_file() else set()
    remaining = [cell for cell in cells if cell.key not in finished]
    seconds, peak = estimate(remaining, 1 if executor == "serial" else workers, threads)
    print(f"{len(finished & {c.key for c in cells})} finished in {out}, {len(remaining)} to run")
    print(f"estimate: about {seconds:.0f} s of compute on {executor} ({workers} workers x {threads} threads) "
          f"and {peak / 2**30:.1f} GiB peak memory, plus the one-off JIT compilation on a cold cache "
          "(1-3 minutes on two cores)")


def _applying_axes(cells) -> set:
    """The axes that change some cell: a propagation-only study reads no training axis, and the other way round."""
    kinds = {cell.trains for cell in cells}
    ignored = set(TRAINING_AXES) | {"task"} if kinds == {False} else set(PROPAGATION_AXES) if kinds == {True} else set()
    return set(AXES) - ignored


def _print_summary(out, outcome):
    print(f"{outcome.done} cells run, {outcome.skipped} skipped, {len(outcome.failed)} failed "
          f"in {outcome.seconds:.1f} s on {outcome.pool['executor']} ({outcome.pool['workers']} workers); "
          f"results in {out}")
    try:
        rows = store.load(out)
    except store.ResultsError:
        return
    propagation = rows[rows["task"] == "none"] if "task" in rows.columns else rows
    if not propagation.empty:
        # The verdict is the analysis layer's (the report's readings say the same); imported only here.
        from analysis.verdict import TOLERANCE_DECADES, criticality, describe

        table = criticality(propagation)
        print(f"\nCriticality per activation (near-critical: forward and gradient variance each change by at most a "
              f"factor {10 ** TOLERANCE_DECADES:g} over the depth; per-layer gains, 1 = flat, the backward one is "
              "chi1)")
        columns = ["activation", *table.attrs["varying"], "verdict", "best", "forward", "backward"]
        print(table[[c for c in columns if c in table.columns]].to_string(
            index=False, float_format=lambda x: f"{x:.3f}", na_rep="-"))
        print()
        for sentence in describe(table):
            print(f"  {sentence}")
    training = rows[rows["task"] != "none"] if "task" in rows.columns else rows.iloc[:0]
    if not training.empty:
        print("\nTraining: final loss (median over seeds), accuracy (mean) and diverged runs")
        print(training_table(training).to_string(index=False, float_format=lambda x: f"{x:.3f}"))


def _preload_analysis():
    """Import the analysis layer and set up matplotlib's writers while the cells run.

    The parent only waits for its workers then; after the last cell it would otherwise spend
    about a second on this alone, with a core idle.  ``run_study`` runs it in a thread and
    joins it before returning (the report's writer forks only from a single-threaded process);
    any error is left to the report's own import to raise, at its time.
    """
    try:
        from analysis import figures
        from analysis._figure_writer import prepare_for_children
        from analysis.report import FORMATS

        figures.apply_style()
        prepare_for_children(FORMATS)
    except Exception:  # noqa: BLE001 -- see the docstring
        log.debug("preloading the analysis layer failed", exc_info=True)


def _write_report(out, quiet=False):
    """The analysis report of the results (``analysis`` is the layer above; imported only here)."""
    from analysis.report import build_report

    try:
        index = build_report(out, out / "report")
    except Exception as error:  # noqa: BLE001 -- the sweep's results stand; its exit code is the cells'
        log.warning("no report (%s: %s); results are in %s, retry with python -m analysis.report %s",
                    type(error).__name__, error, out, out, exc_info=not isinstance(error, store.ResultsError))
        return
    if not quiet:
        print(f"report: {index}")


if __name__ == "__main__":
    sys.exit(main())
