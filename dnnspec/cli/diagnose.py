"""`dnnspec diagnose`, `dnnspec plot`, `dnnspec new`: see inside training, draw runs, start a spec
(docs/diagnostics.md)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from .common import allow_option, handle_errors, overrides_option

TEMPLATES = ("default", "mnist", "transfer")



def _warn(program, allow, shown: set | None = None) -> None:
    """Print the program's warnings less the allowed codes (and those in `shown`, a set of
    (code, message) already printed for another variation)."""
    from ..check.lints import without
    from ..errors import render

    for d in without(program.warnings, allow):
        if shown is not None:
            if (d.code, d.message) in shown:
                continue
            shown.add((d.code, d.message))
        click.echo(render(d, getattr(program, "sources", {}), getattr(program, "file", None)), err=True)


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@overrides_option
@click.option("--batches", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Batches of training examples (of the spec's batch size) to measure over.")
@click.option("--steps", type=click.IntRange(0, 100_000), default=0, show_default=True,
              help="Also diagnose after this many training steps (of a copy; no file is written).")
@click.option("--compare", metavar="KEY=V1,V2,...",
              help="Variations side by side: set a layer parameter on every layer line that takes it "
                   "(init of dense, maxout, dropconnect), one column per value, e.g. "
                   "\"init=normal(stddev=1),glorot_normal,he_normal\".")
@click.option("--compare-set", "compare_sets", multiple=True, metavar="KEY=VALUE",
              help="A variation: one --set override per column (repeatable).")
@click.option("--compare-spec", "compare_specs", multiple=True, metavar="OTHER.dnn", type=click.Path(dir_okay=False),
              help="Another spec as a further variation, e.g. a residual net beside a plain one (repeatable).")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False),
              help="Write activations.png (histograms per layer) and gradients.png (norm by depth) here.")
@click.option("--force", is_flag=True, help="Replace existing figures.")
@click.option("--json", "as_json", is_flag=True, help="Print every number as one JSON object.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="Threads, as for `dnnspec run --threads`.")
@allow_option
@handle_errors
def diagnose(spec, overrides, batches, steps, compare, compare_sets, compare_specs, plot_dir, force, as_json, threads,
             allow):
    """See inside SPEC: per-layer stats, a verdict.

    Forward and backward on a few real batches of the spec's data, at initialization (and after
    --steps updates of a copy): activation mean and spread, saturated and dead units, gradient
    norms, update/weight ratios; the verdict names the layers (vanishing or exploding gradients,
    saturated or dead units) or says healthy."""
    from .. import diagnose as dg
    from ..check.lints import check_allow

    allow = check_allow(allow)
    variations = dg.spec_variations(spec, overrides, compare, compare_sets, compare_specs)
    if plot_dir:
        from ..plots import check_figure, pyplot

        pyplot()  # matplotlib missing: say so before the work
        for name in ("activations.png", "gradients.png"):
            check_figure(Path(plot_dir) / name, force)
    shown: set = set()
    for v in variations:
        _warn(v.program, allow, shown)
    reports = dg.diagnose_variations(variations, batches, steps, threads)
    out = sys.stderr if as_json else sys.stdout
    if as_json:
        click.echo(json.dumps(dg.report_json(spec, reports)))
    else:
        click.echo(dg.report_text(reports), nl=False)
    if plot_dir:
        from ..plots import activation_histograms, gradient_norms, save

        for name, fig in (("activations.png", activation_histograms(reports)),
                          ("gradients.png", gradient_norms(reports))):
            path = save(fig, Path(plot_dir) / name, force)
            click.echo(f"figure written to {path}", file=out)


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False),
              help="The figure to write (.png, .svg or .pdf).")
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="A metric to draw (loss, accuracy, lr, or any key of the log; repeatable; default: loss, "
                   "accuracy and lr).")
@click.option("--log-y", is_flag=True, help="Logarithmic y axis for losses.")
@click.option("--title", help="The figure's title.")
@click.option("--layers", is_flag=True, help="Draw the per-layer rows of `monitor layers` instead.")
@click.option("--force", is_flag=True, help="Replace an existing figure.")
@handle_errors
def plot(runs, out, metrics, log_y, title, layers, force):
    """Draw learning curves of runs on one chart.

    Training and validation loss and accuracy per epoch, and the learning rate, one line per run,
    with a legend of what differs between their specs; --layers: the per-layer monitor rows."""
    from ..plots import check_figure, layer_curves, learning_curves, load_runs, pyplot, save

    pyplot()
    check_figure(out, force)
    loaded = load_runs(runs)
    for r in loaded:
        if r.note:
            click.echo(r.note, err=True)
    fig = layer_curves(loaded, title) if layers else learning_curves(loaded, metrics, log_y, title)
    save(fig, out, force)
    click.echo(f"figure written to {out} ({len(loaded)} run{'s' * (len(loaded) != 1)})")


def template_text(template: str, name: str, path: str) -> str:
    """A template of dnnspec/templates/ with its model name and paths filled in."""
    from importlib import resources
    from string import Template

    text = (resources.files("dnnspec") / "templates" / f"{template}.dnn").read_text(encoding="utf-8")
    return Template(text).substitute(name=name, path=path)


@click.command()
@click.argument("name")
@click.option("--template", type=click.Choice(TEMPLATES), default="default", show_default=True,
              help="default: the deep-net recipe on built-in spirals; mnist: the same on MNIST; transfer: reuse "
                   "and freeze the lower layers of a trained base.")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), help="Where to write it (default: NAME.dnn).")
@click.option("--force", is_flag=True, help="Replace an existing spec file.")
@handle_errors
def new(name, template, out, force):
    """Write a new commented spec from a template.

    NAME.dnn (or -o PATH) with the default recipe for training deep nets (He init, ELU, batch
    norm, dropout, Nesterov or Adam, early stopping) that checks cleanly."""
    from ..errors import UserError
    from ..fileio import check_output, write_text

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise UserError(f"{name!r} is not a model name: use letters, digits and _ (not starting with a digit)")
    path = Path(out) if out else Path(f"{name}.dnn")
    check_output(path, lambda p: p.suffix == ".dnn", "spec (.dnn)", force)
    write_text(path, template_text(template, name, str(path)))
    click.echo(f"wrote {path} (template {template}); next: dnnspec check {path}")
