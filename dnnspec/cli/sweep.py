"""`dnnspec sweep`, `dnnspec sweep-report`, `dnnspec ensemble`: families of runs (docs/sweeps.md)."""

from __future__ import annotations

import json
import sys

import click

from . import main
from .common import EXIT_RUNTIME, handle_errors, overrides_option


@main.command("sweep")
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@overrides_option
@click.option("--grid", "grids", multiple=True, metavar="PATH=a,b,c",
              help="Try each value of a parameter (any --set key; `spec` for spec files). Repeatable: the grid is "
                   "the product.")
@click.option("--sample", "samples", multiple=True, metavar="PATH=DIST",
              help="Draw a parameter from loguniform(lo,hi), uniform(lo,hi), int(lo,hi) or choice(a,b,...). "
                   "Repeatable.")
@click.option("--trials", type=click.IntRange(1), help="Samples per grid point (default 8 with --sample, else 1).")
@click.option("--seed", type=int, help="Seed of the sampling (default 0); trials keep the spec's train.seed.")
@click.option("--metric", type=click.Choice(["val_accuracy", "val_loss", "test_accuracy", "test_loss",
                                             "train_accuracy", "train_loss", "accuracy", "loss"]),
              help="What ranks the trials (default val_accuracy).")
@click.option("--mode", type=click.Choice(["max", "min"]), help="Default: max for accuracies, min for losses.")
@click.option("--refine", type=click.IntRange(0), help="Coarse to fine: this many more rounds, each narrowed around "
              "the best trial so far.")
@click.option("--sweep-file", type=click.Path(dir_okay=False), help="A sweep file (.json, or the line format of "
              "specs/sweeps/*.sweep); flags add to it and override its single values.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: a process pool on this machine; ray: Ray Tune (pip install \"dnnspec[ray]\").")
@click.option("--workers", type=click.IntRange(1), help="Trials at once (default: workers × threads = cores).")
@click.option("--threads", type=click.IntRange(1), help="BLAS threads per trial (default: cores / workers).")
@click.option("--address", help="Ray: the address of a running cluster (default: start a local Ray).")
@click.option("--scheduler", type=click.Choice(["none", "asha", "median"]), default="none", show_default=True,
              help="Ray: stop bad trials early (ASHA, or the median stopping rule) on the per-epoch metric.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="The sweep folder (rerun the same command to continue an interrupted sweep).")
@click.option("--json", "as_json", is_flag=True, help="Print one final JSON summary on stdout.")
@handle_errors
def sweep(spec, overrides, grids, samples, trials, seed, metric, mode, refine, sweep_file, executor, workers, threads,
          address, scheduler, out_dir, as_json):
    """Run SPEC many times: a grid, random samples, or coarse to fine, each trial a `dnnspec run`
    with its own --set overrides, checkpoint and metrics log in OUT/trial-NNN/."""
    from ..sweep import SweepDef, SweepError, parse_grid, parse_sample, read_sweep_file, run_sweep

    d = read_sweep_file(sweep_file) if sweep_file else SweepDef(trials=None)
    if spec is not None:
        if any(a.path == "spec" for a in d.axes):
            raise SweepError("SPEC is given, but the sweep file sweeps over specs; give one or the other")
        d.spec = spec
    d.base = [*d.base, *overrides]
    d.axes = [*d.axes, *map(parse_grid, grids), *map(parse_sample, samples)]
    for name, value in (("trials", trials), ("seed", seed), ("metric", metric), ("mode", mode), ("refine", refine)):
        if value is not None:
            setattr(d, name, value)
    err = sys.stderr if as_json else sys.stdout
    result = run_sweep(d, out_dir, executor=executor, workers=workers, threads=threads, address=address,
                       scheduler=scheduler, log=lambda msg: click.echo(msg, file=err))
    if as_json:
        click.echo(json.dumps(result))
    if result["status"].get("failed"):
        click.echo(f"error: {result['status']['failed']} trials failed (their errors are in {out_dir}/manifest.json; "
                   "rerun the command to retry them)", err=True)
        sys.exit(EXIT_RUNTIME)


@main.command("sweep-report")
@click.argument("sweep_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout.")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False),
              help="Write PNG plots here: the metric against each swept parameter, and the learning curves "
                   "(needs matplotlib: the 'plot' extra).")
@handle_errors
def sweep_report(sweep_dir, as_csv, as_json, plot_dir):
    """The trials of a sweep, best first: swept values, metrics, epochs, seconds."""
    from ..sweep import report

    if as_csv and as_json:
        raise click.UsageError("give --csv or --json, not both")
    if as_csv:
        click.echo(report.as_csv(sweep_dir), nl=False)
    elif as_json:
        click.echo(report.as_json(sweep_dir))
    else:
        click.echo(report.table(sweep_dir), nl=False)
    if plot_dir:
        for path in report.plot(sweep_dir, plot_dir):
            click.echo(f"plot written to {path}", err=as_csv or as_json)


@main.command("ensemble")
@click.argument("sweep_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--top", type=click.IntRange(1), default=5, show_default=True, help="How many of the best trials.")
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="all", show_default=True)
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="The manifest (default: SWEEP_DIR/ensemble.json).")
@click.option("--json", "as_json", is_flag=True, help="Print what `dnnspec eval SPEC -c CKPT... --json` prints.")
@handle_errors
def ensemble(sweep_dir, top, split, out, as_json):
    """Average the probabilities of the best TOP trials of a sweep; compare with the best single trial."""
    from ..sweep import ensemble as ens

    report = ens.build(sweep_dir, top, split, out)
    if as_json:
        click.echo(json.dumps(report["ensemble"]))
    else:
        click.echo(ens.text(report))
