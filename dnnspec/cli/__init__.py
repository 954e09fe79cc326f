"""The `dnnspec` command line: thin commands over the pipeline stages.

Exit codes: 0 success, 1 runtime failure (bad data file, damaged checkpoint, diverged training),
2 spec error (or bad usage). A user's mistake never shows a traceback; `--debug` shows one.
Heavy modules are imported inside commands so `dnnspec --help` starts fast.
"""

from __future__ import annotations

import json
import sys

import click

from .common import EXIT_RUNTIME, handle_errors, overrides_option, warn

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
@handle_errors
def run(spec, overrides, as_json, quiet, resume, reuses, no_cache):
    """Train SPEC as it says; write its checkpoint and metrics log."""
    from .. import api
    from ..train.loop import Silent
    from ..train.progress import Printer

    if no_cache:
        overrides = (*overrides, "train.cache_frozen=false")
    model = api.compile_file(spec, overrides)
    warn(model.program)
    out = sys.stderr if as_json else sys.stdout
    for arg in reuses:
        path, _, pattern = arg.partition(":")
        model.reuse_reports.append(model.reuse(path, pattern))
    if not quiet:
        for report in model.reuse_reports:
            click.echo(report.format(), file=out)
    reporter = Silent() if quiet else Printer(out=out)
    result = api.run(model, reporter=reporter, resume=resume,
                     log=(lambda msg: None) if quiet else (lambda msg: click.echo(msg, file=out)))
    if as_json:
        click.echo(json.dumps(result))
    else:
        _print_result(result)


def _print_result(r: dict) -> None:
    parts = [f"{r['epochs_run']} epochs in {r['seconds']:.1f}s"]
    for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
        if r.get(key) is not None:
            parts.append(f"{key} {r[key]:.4f}")
    if r.get("checkpoint"):
        parts.append(f"checkpoint {r['checkpoint']}")
    click.echo("done: " + ", ".join(parts))


@main.command()
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@overrides_option
@click.option("--list", "list_", is_flag=True, help="List every name a spec can use, with parameters.")
@handle_errors
def check(spec, overrides, list_):
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
    warn(program)
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

    from ..errors import UserError
    from ..syntax.fmt import format_spec
    from ..syntax.parser import parse

    unformatted = []
    for path in specs:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise UserError(f"{path}: cannot read: {e.strerror}") from None
        out = format_spec(parse(text, path))
        if check_only:
            if out != text:
                unformatted.append(path)
        elif write:
            if out != text:
                Path(path).write_text(out)
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

    model = api.compile_file(spec, overrides)
    warn(model.program)
    click.echo(model.summary(), nl=False)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@overrides_option
@handle_errors
def plan(spec, overrides):
    """Print the compiled op list."""
    from .. import api

    model = api.compile_file(spec, overrides)
    p = model.plan
    click.echo(f"plan for model '{model.program.model_name}': {len(p.ops)} ops, "
               f"{p.theta.size:,} trainable + {p.fixed.size:,} fixed float32 values")
    for line in p.describe():
        click.echo(line)
    click.echo(f"loss: {model.program.train.loss}")


@main.command("eval")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--checkpoint", "-c", "ckpt", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint whose weights to evaluate.")
@overrides_option
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def eval_(spec, ckpt, overrides, as_json):
    """Evaluate a checkpoint on the spec's data (test split, else validation)."""
    from .. import api
    from ..ckpt import hdf5

    model = api.compile_file(spec, overrides)
    model.restore(hdf5.load(ckpt), strict=True)
    splits = model.load_data()
    results = {}
    for split in ("train", "val", "test"):
        data = getattr(splits, split)
        if data is not None:
            results[split] = model.evaluate(*data)
    if as_json:
        click.echo(json.dumps(results))
        return
    for split, metrics in results.items():
        click.echo(f"{split:<6} " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


from .ckpt import ckpt  # noqa: E402  (subcommand groups register on import)

main.add_command(ckpt)


if __name__ == "__main__":  # pragma: no cover
    main()
