"""The `dnnspec` command line: thin commands over the pipeline stages.

Exit codes: 0 success, 1 runtime failure (bad data file, damaged checkpoint, diverged training),
2 spec error (or bad usage). A user's mistake never shows a traceback; `--debug` shows one.
Heavy modules are imported inside commands so `dnnspec --help` starts fast.
"""

from __future__ import annotations

import json
import signal
import sys

import click

from .common import EXIT_RUNTIME, allow_option, handle_errors, overrides_option, warn

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show Python tracebacks.")
@click.version_option(package_name="dnnspec")
def main(debug: bool) -> None:
    """dnnspec: compile .dnn model specs, train them, and manage HDF5 checkpoints."""


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@overrides_option
@click.option("--json", "as_json", is_flag=True, help="Print one final JSON object on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no per-epoch lines.")
@click.option("--resume", type=click.Path(dir_okay=False), help="Continue the run saved in this checkpoint.")
@click.option("--reuse", "reuses", multiple=True, metavar="CKPT[:PATTERN]",
              help="Load the variables matching PATTERN from another checkpoint before training (repeatable).")
@click.option("--no-cache", is_flag=True, help="Do not cache the output of frozen layers.")
@click.option("--threads", type=click.IntRange(1),
              help="Threads: N for the GEMMs (in blocks, each a one-thread BLAS call) and the element-wise work; "
                   "with OpenBLAS the same results for every N (default: chosen when training starts, by timing "
                   "a few steps of each configuration).")
@click.option("--monitor", "monitor_every", type=click.IntRange(1), metavar="N",
              help="Add per-layer statistics to the metrics log every N updates (`monitor layers every=N`).")
@click.option("--tensorboard", "tensorboard_dir", type=click.Path(file_okay=False),
              help="Also write TensorBoard scalars and per-layer histograms here (the 'tensorboard' extra).")
@allow_option
@handle_errors
def run(spec, overrides, as_json, quiet, resume, reuses, no_cache, threads, monitor_every, tensorboard_dir, allow):
    """Train SPEC as it says; write its checkpoint and metrics log."""
    if threads:
        from ..train.parallel import force_threads

        force_threads(threads)
    from .. import api, session
    from ..train.loop import Silent
    from ..train.progress import Printer

    if no_cache:
        overrides = (*overrides, "train.cache_frozen=false")
    from ..check import check_file
    from ..errors import DataError

    program = check_file(spec, overrides)
    if program.data is None:  # said before any weights are allocated (a huge model: seconds, gigabytes)
        raise DataError(f"{spec}: the spec has no `data` declaration: `dnnspec run` trains on the spec's data "
                        "(add `data NAME = source(...)`; `dnnspec check --list` lists the sources)")
    model = api.Model(program, apply_reuse=resume is None)  # a resumed run has its weights
    warn(model.program, allow)
    out = sys.stderr if as_json else sys.stdout
    for arg in reuses:
        path, _, pattern = arg.partition(":")
        model.reuse_reports.append(model.reuse(path, pattern))
    if not quiet:
        for report in model.reuse_reports:
            click.echo(report.format(), file=out)
    reporter = Silent() if quiet else Printer(out=out)
    cfg = model.program.train
    every = monitor_every or (cfg.monitor_every if cfg.monitor else None)
    monitor = hooks = None
    if every or tensorboard_dir:
        from ..diagnose import LayerMonitor, tensorboard_writer

        monitor = LayerMonitor(model.plan, every) if every else None
        hooks = [tensorboard_writer(tensorboard_dir)] if tensorboard_dir else []
    result = session.run(model, reporter=reporter, resume=resume, monitor=monitor, hooks=hooks or (),
                         log=(lambda msg: None) if quiet else (lambda msg: click.echo(msg, file=out)),
                         after_stop=signal.SIG_IGN)  # this process prints the run's message and exits
    if as_json:
        click.echo(json.dumps(result))
    else:
        _print_result(result)


def _print_result(r: dict) -> None:
    n = r["epochs_run"]
    parts = [f"{n} epoch{'s' if n != 1 else ''} in {r['seconds']:.1f}s"]
    if r.get("stopped_early"):
        parts.append(f"stopped early at epoch {r['last_epoch']}")
    # a run without accuracy (a reconstruction, a regression) is summed up by its losses
    metric = "accuracy" if r.get("train_accuracy") is not None else "loss"
    if r.get(f"train_{metric}") is not None:
        parts.append(f"train_{metric} {r[f'train_{metric}']:.4f} (epoch {r['last_epoch']}, running)")
    scored = [k for k in (f"val_{metric}", f"test_{metric}") if r.get(k) is not None]
    if scored:
        source = r["weights"] + (f", epoch {r['weights_epoch']}" if r.get("weights_epoch") else "")
        parts.append(", ".join(f"{k} {r[k]:.4f}" for k in scored) + f" ({source})")
    if r.get("checkpoint"):
        parts.append(f"checkpoint {r['checkpoint']}")
    click.echo("done: " + ", ".join(parts))


@main.command()
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@overrides_option
@click.option("--list", "list_", is_flag=True, help="List every name a spec can use, with parameters.")
@allow_option
@handle_errors
def check(spec, overrides, list_, allow):
    """Check SPEC: names, types, ranges, shapes, lints. Exit 2 on errors."""
    from ..check import check_file
    from ..report import catalogue_text

    if list_:
        click.echo(catalogue_text())
        if spec is None:
            return
    if spec is None:
        raise click.UsageError("give a SPEC to check, or --list")
    program = check_file(spec, overrides)
    warn(program, allow)
    n = len(program.variable_names())
    click.echo(f"{spec}: ok ({len(program.ops)} ops, {n} variables, {len(program.warnings)} warnings)")


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-w", "--write", is_flag=True, help="Rewrite the files in place.")
@click.option("--check", "check_only", is_flag=True, help="Exit 1 if a file is not formatted.")
@handle_errors
def fmt(specs, write, check_only):
    """Print SPECS in canonical form (or rewrite them with -w)."""
    from pathlib import Path

    import stat

    from ..check import read_spec
    from ..fileio import write_text
    from ..syntax.fmt import format_spec
    from ..syntax.parser import parse

    unformatted = []
    for path in specs:
        text = read_spec(path)  # UTF-8, BOM dropped, at most the spec size limit: never a MemoryError
        out = format_spec(parse(text, path))
        if check_only:
            if out != text:
                unformatted.append(path)
        elif write:
            if out != text:  # atomically, keeping the file's mode: a crash never truncates a spec
                write_text(path, out, mode=stat.S_IMODE(Path(path).stat().st_mode))
        else:
            click.echo(out, nl=False)
    if unformatted:
        for p in unformatted:
            click.echo(f"{p}: not formatted", err=True)
        sys.exit(EXIT_RUNTIME)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@overrides_option
@handle_errors
def summary(spec, overrides):
    """Print a layer table: output shapes and parameter counts."""
    from .. import api

    model = api.compile_file(spec, overrides, apply_reuse=False)  # no weights needed from `reuse`
    warn(model.program)
    click.echo(model.summary(), nl=False)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@overrides_option
@handle_errors
def plan(spec, overrides):
    """Print the compiled op list."""
    from .. import api

    model = api.compile_file(spec, overrides, apply_reuse=False)  # no weights needed from `reuse`
    p = model.plan
    click.echo(f"plan for model '{model.program.model_name}': {len(p.ops)} ops, "
               f"{p.theta.size:,} trainable + {p.fixed.size:,} fixed float32 values")
    for line in p.describe():
        click.echo(line)
    click.echo(f"loss: {model.program.train.loss}")
    aug = model.program.augment
    if aug is not None:
        image = "x".join(map(str, aug.image)) if aug.image else "none"
        from ..check.lints import component_text

        steps = ", ".join(component_text(c, defaults=True) for c in aug.steps)
        click.echo(f"augment: [{steps}] on each training batch (image {image}; never on evaluation data; "
                   "no frozen-layer cache)")


@main.command("eval")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--checkpoint", "-c", "ckpts", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="Checkpoint to evaluate; several make an ensemble (average of probabilities).")
@overrides_option
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="all", show_default=True)
@click.option("--top-k", "top_k", type=click.IntRange(1), multiple=True, help="Also report top-k accuracy.")
@click.option("--per-class", is_flag=True, help="Also report precision/recall/F1 per class.")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def eval_(spec, ckpts, overrides, split, top_k, per_class, as_json):
    """Evaluate checkpoints of SPEC on its data; several checkpoints are averaged as an ensemble."""
    import numpy as np

    from .. import api, metrics
    from ..ckpt import hdf5
    from ..sweep.ensemble import expand_checkpoints

    ckpts = expand_checkpoints(ckpts)  # `-c ensemble.json` (written by `dnnspec ensemble`) lists checkpoints
    model = api.compile_file(spec, overrides, apply_reuse=False)  # no weights needed from `reuse`
    splits = model.load_data()
    names = ["train", "val", "test"] if split == "all" else [split]
    data = {n: getattr(splits, n) for n in names if getattr(splits, n) is not None}
    probs = {n: 0.0 for n in data}
    for path in ckpts:
        model.restore(hdf5.load(path), strict=True)
        for n, (x, _) in data.items():
            probs[n] = probs[n] + model.predict(x)
    results = {}
    for n, (x, y) in data.items():
        if len(ckpts) == 1:
            row = model.evaluate(x, y)  # the spec's own loss (regression losses too)
        else:
            p = probs[n] / len(ckpts)
            if model.plan.loss.labels == "real":
                row = {"loss": float(np.mean((p - np.asarray(y).reshape(p.shape)) ** 2))}
            else:
                row = {"loss": metrics.log_loss(p, y), "accuracy": metrics.accuracy(p, y)}  # one name, one checkpoint or many
        p = probs[n] / len(ckpts)
        if model.plan.loss.labels != "real":
            for k in top_k:
                row[f"top_{k}_accuracy"] = metrics.top_k_accuracy(p, y, k)
            if per_class:
                row["per_class"] = metrics.per_class(p, y)
        results[n] = row
    if as_json:
        click.echo(json.dumps(results))
        return
    if len(ckpts) > 1:
        click.echo(f"ensemble of {len(ckpts)} checkpoints (average of probabilities)")
    for n, row in results.items():
        click.echo(f"{n:<6} " + "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "per_class"))
        for c in row.get("per_class", []):
            click.echo(f"         class {c['class']:>3}  precision {c['precision']:.4f}  recall {c['recall']:.4f}"
                       f"  f1 {c['f1']:.4f}  support {c['support']}")


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@overrides_option
@click.option("--steps-per-epoch", type=click.IntRange(1), help="Updates per epoch (default: from the data).")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a PNG plot (needs matplotlib: the 'plot' extra).")
@handle_errors
def schedule(spec, overrides, steps_per_epoch, plot):
    """Show the learning rate over the whole run, as a table (and optionally a plot)."""
    from .. import api
    from ..errors import UserError

    model = api.compile_file(spec, overrides, apply_reuse=False)  # no weights needed from `reuse`
    cfg = model.program.train
    if cfg.schedule_per == "step" and steps_per_epoch is None:
        if model.program.data is None:
            raise UserError("this schedule counts steps: give --steps-per-epoch (the spec has no data to count)")
        n = len(model.load_data().train[0])
        steps_per_epoch = -(-n // min(cfg.batch, n))
    per_epoch = steps_per_epoch if cfg.schedule_per == "step" else 1
    total = cfg.epochs * per_epoch
    rate = model.trainer.updater.rate
    rates = [float(rate.schedule(rate.base, k)) for k in range(total)]
    unit = "step" if cfg.schedule_per == "step" else "epoch"
    click.echo(f"schedule {cfg.schedule}" + (f" with {cfg.warmup}-{unit} warm-up" if cfg.warmup else "")
               + f", base lr {rate.base:g}, counted per {unit}")
    if cfg.schedule.name == "reduce_on_plateau":
        click.echo("(reduce_on_plateau depends on the monitored metric; shown as if it kept improving)")
    click.echo(f"{'epoch':>6} {unit + ' k':>10} {'lr':>12}")
    for epoch in range(cfg.epochs):
        k = epoch * per_epoch
        click.echo(f"{epoch + 1:>6} {k:>10} {rates[k]:>12.6g}")
    if plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise UserError("--plot needs matplotlib: pip install 'dnnspec[plot]'") from None
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(range(total), rates)
        ax.set_xlabel(f"{unit}")
        ax.set_ylabel("learning rate")
        ax.set_title(f"{model.program.model_name}: {cfg.schedule}")
        fig.tight_layout()
        from pathlib import Path

        from ..fileio import atomic_write

        with atomic_write(plot) as tmp:  # savefig picks the format from the name; the temp name has none
            fig.savefig(tmp, dpi=100, format=Path(plot).suffix.lstrip(".") or "png")
        click.echo(f"plot written to {plot}")


from .ckpt import ckpt  # noqa: E402  (subcommand groups register on import)

main.add_command(ckpt)
from . import sweep as _sweep  # noqa: E402,F401  (registers sweep, sweep-report, ensemble)
from .diagnose import diagnose, new, plot  # noqa: E402  (docs/diagnostics.md)
main.add_command(diagnose), main.add_command(plot), main.add_command(new)
from .augment import augment  # noqa: E402  (docs/language.md, "Augmentation")
main.add_command(augment)


def entry() -> None:
    """The command line (dnnspec.console wraps it for the console script)."""
    main()


if __name__ == "__main__":  # pragma: no cover
    entry()
