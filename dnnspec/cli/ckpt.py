"""`dnnspec ckpt ...`: inspect and manage HDF5 checkpoints.

The commands are thin: the work is in `dnnspec.ckpt.tools` (pure functions over checkpoints),
reading goes through `hdf5.load` (any failure to read a file is a CheckpointError naming it: exit
1) and writing through `hdf5.save` (atomic, `dnnspec.fileio.atomic_write`). A command that writes
(-o OUT) refuses an existing file unless given --force, and a file that is not a dnnspec
checkpoint even then.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .common import EXIT_RUNTIME, handle_errors, overrides_option

ckpt_path = click.Path()  # an input: a folder or a damaged file is reported by hdf5.load (exit 1, naming it)
output_option = click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
                             help="Write the new checkpoint here.")
force_option = click.option("--force", is_flag=True,
                            help="Replace an existing checkpoint at -o (never a file that is not a dnnspec checkpoint).")


@click.group()
def ckpt():
    """Inspect and manage HDF5 checkpoints."""


def _shape(shape) -> str:
    return str(tuple(int(d) for d in shape))  # Python's spelling, as in the other checkpoint errors


def _var_lines(variables) -> list[str]:
    width = max((len(n) for n in variables), default=0)
    swidth = max((len(_shape(r.value.shape)) for r in variables.values()), default=0)
    rwidth = max((len(r.role) for r in variables.values()), default=0)
    lines = []
    for name, rec in variables.items():
        flags = "trainable" if rec.trainable else "fixed"
        cols = f"  [{', '.join(rec.collections)}]" if rec.collections else ""
        lines.append((f"{name:<{width}}  {_shape(rec.value.shape):<{swidth}}  {rec.value.dtype}  {flags:<9}  "
                      f"{rec.role:<{rwidth}}{cols}").rstrip())
    return lines


@ckpt.command("show")
@click.argument("path", type=ckpt_path)
@handle_errors
def ckpt_show(path):
    """Variables, shapes, dtypes, trainable flags, collections and metadata of a checkpoint."""
    from ..ckpt import hdf5

    c = hdf5.load(path)
    for key in ("format", "format_version", "dnnspec_version", "created", "spec_sha256"):
        if key in c.attrs:
            click.echo(f"{key}: {c.attrs[key]}")
    st = c.state
    if st:
        step = c.optimizer["step"] if c.optimizer else st.get("global_step")  # the one step counter
        click.echo(f"epoch: {st.get('epoch')}  step: {step}  best: {st.get('best')}")
    for d in st.get("derived", []):
        click.echo("derived: " + ", ".join(f"{k} {v}" for k, v in d.items()))
    if c.optimizer:
        n_slots = sum(len(a) for a in c.optimizer["slots"].values())
        click.echo(f"optimizer: {c.optimizer['name']} {json.dumps(c.optimizer['hyperparameters'])} "
                   f"step {c.optimizer['step']} slots {sorted(c.optimizer['slots'])} ({n_slots} arrays)")
    n_values = sum(r.value.size for r in c.variables.values())
    click.echo(f"variables ({len(c.variables)}, {n_values:,} values):")
    for line in _var_lines(c.variables):
        click.echo("  " + line)
    if c.collections:
        click.echo("collections:")
        for cname, names in c.collections.items():
            click.echo(f"  {cname}: {', '.join(names)}")
    if c.history:
        last = c.history[-1]
        click.echo("last epoch: " + "  ".join(f"{k} {v:.4g}" for k, v in last.items()))


@ckpt.command("ls")
@click.argument("path", type=ckpt_path)
@click.argument("pattern", required=False, default="")
@click.option("--names", "names_only", is_flag=True, help="Print the names only, one a line.")
@handle_errors
def ckpt_ls(path, pattern, names_only):
    """List the variables of a checkpoint (those PATTERN matches from the start of the name)."""
    from ..ckpt import hdf5, tools

    c = hdf5.load(path)
    names = tools.select(c.variables, pattern, where=path)
    chosen = {n: c.variables[n] for n in names}
    for line in (names if names_only else _var_lines(chosen)):
        click.echo(line)


@ckpt.command("verify")
@click.argument("path", type=ckpt_path)
@click.argument("pattern", required=False)
@click.option("--against", type=ckpt_path, metavar="OTHER",
              help="Check that the variables PATTERN matches are bit-identical to those in OTHER.")
@handle_errors
def ckpt_verify(path, pattern, against):
    """Checksums, format version, no NaN/Inf; with --against, bit-identical variables. Exit 1 on problems."""
    from ..ckpt import hdf5, tools

    if pattern is not None and against is None:
        raise click.UsageError("PATTERN selects the variables to compare: give --against OTHER too")
    problems = tools.verify(path, against, pattern)
    if problems:
        click.echo(f"{path}: {len(problems)} problem{'s' * (len(problems) != 1)}:")
        for p in problems:
            click.echo(f"  - {p}")
        sys.exit(EXIT_RUNTIME)
    c = hdf5.load(path)
    n_slots = sum(len(a) for a in c.optimizer["slots"].values()) if c.optimizer else 0
    msg = (f"{path}: ok (format version {c.attrs.get('format_version')}, {len(c.variables)} variables, "
           f"{n_slots} optimizer slot arrays: checksums verified, no NaN or Inf)")
    if against is not None:
        n = len(tools.select(c.variables, pattern))
        msg += f"\n{n} variable{'s' * (n != 1)}" + (f" matching {pattern!r}" if pattern else "") + \
            f" bit-identical to {against}"
    click.echo(msg)


def _mapping(maps) -> dict[str, str] | None:
    out = {}
    for m in maps:
        if "=" not in m:
            raise click.BadParameter(f"{m!r} is not SRC=DST", param_hint="--map")
        src, dst = m.split("=", 1)
        out[src] = dst
    return out or None


@ckpt.command("compat")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.argument("path", type=ckpt_path)
@click.option("--scope", default="", metavar="PATTERN", help="Reuse only the checkpoint variables it matches.")
@click.option("--from", "rename_from", default="", metavar="PATTERN", help="Rename: the start to replace...")
@click.option("--to", "rename_to", default=None, metavar="REPLACEMENT", help="...and what replaces it.")
@click.option("--map", "maps", multiple=True, metavar="SRC=DST",
              help="Assignment map entry: 'dnn/=encoder/' (scopes) or exact names (repeatable).")
@overrides_option
@handle_errors
def ckpt_compat(spec, path, scope, rename_from, rename_to, maps, overrides):
    """Dry run: which variables of SPEC the checkpoint would fill. Exit 1 on shape conflicts."""
    from .. import api
    from ..ckpt import hdf5, tools

    if rename_to is not None and not rename_from:
        raise click.UsageError("--to needs --from")
    model = api.compile_file(spec, overrides, apply_reuse=False)
    report = tools.compat(model.plan.infos, hdf5.load(path), scope, rename_from, rename_to or "",
                          _mapping(maps), source_path=path)
    click.echo(report.format())
    report.raise_on_conflicts(path)
    report.raise_if_empty(path)
    total = len(report.shapes)
    click.echo(f"compatible: the checkpoint fills {len(report.loaded)} of {total} variables of {spec}")


LABELS = {"same": "same", "close": "close", "changed": "changed", "shape": "shape",
          "only_a": "only in A", "only_b": "only in B"}


@ckpt.command("diff")
@click.argument("a", type=ckpt_path)
@click.argument("b", type=ckpt_path)
@click.option("--atol", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Differences up to this are reported as 'close', not 'changed'.")
@click.option("--changed", "changed_only", is_flag=True, help="Hide the variables that are bit-identical.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when anything is changed, reshaped, added or removed.")
@handle_errors
def ckpt_diff(a, b, atol, changed_only, exit_code):
    """Which variables differ between checkpoints A and B, by how much, and shape changes."""
    from ..ckpt import hdf5, tools

    rows = tools.diff(hdf5.load(a), hdf5.load(b), atol)
    click.echo(f"A: {a}\nB: {b}")
    shown = [r for r in rows if not (changed_only and r.status == "same")]
    width = max((len(r.name) for r in shown), default=0)
    for r in shown:
        if r.status == "shape":
            detail = f"{_shape(r.shape_a)} -> {_shape(r.shape_b)}"
        elif r.status in ("only_a", "only_b"):
            detail = _shape(r.shape_a if r.status == "only_a" else r.shape_b)
        else:
            detail = _shape(r.shape_a) + ("" if r.equal else f"  max |a-b| {r.max_abs:.3g}")
        click.echo(f"{LABELS[r.status]:<9}  {r.name:<{width}}  {detail}")
    counts = {s: sum(r.status == s for r in rows) for s in LABELS}
    click.echo(", ".join(f"{counts[s]} {LABELS[s]}" for s in LABELS))
    if exit_code and any(counts[s] for s in LABELS if s not in ("same", "close")):
        sys.exit(EXIT_RUNTIME)


def _refuse_overwrite(out: str, force: bool) -> None:
    """-o replaces only a dnnspec checkpoint, and only with --force (its inputs are read first)."""
    from ..ckpt import hdf5
    from ..fileio import check_output

    check_output(out, hdf5.is_checkpoint, "checkpoint", force)


@ckpt.command("rename")
@click.argument("path", type=ckpt_path)
@click.option("--from", "rename_from", required=True, metavar="PATTERN",
              help="Regex matched at the start of each name: the part to replace.")
@click.option("--to", "rename_to", required=True, metavar="REPLACEMENT", help="Its replacement (\\1 allowed).")
@output_option
@force_option
@handle_errors
def ckpt_rename(path, rename_from, rename_to, out, force):
    """Rename variables (with their optimizer slots and collection members)."""
    from ..ckpt import hdf5, tools

    _refuse_overwrite(out, force)
    c = hdf5.load(path)
    new = tools.rename(c, rename_from, rename_to)
    hdf5.save(out, new)
    changed = [(o, n) for o, n in zip(c.variables, new.variables) if o != n]
    click.echo(f"wrote {out}: renamed {len(changed)} of {len(c.variables)} variables")
    for o, n in changed:
        click.echo(f"  {o} -> {n}")


@ckpt.command("extract")
@click.argument("path", type=ckpt_path)
@click.argument("pattern")
@output_option
@force_option
@handle_errors
def ckpt_extract(path, pattern, out, force):
    """Write the variables PATTERN matches (and their optimizer slots) to a new checkpoint."""
    from ..ckpt import hdf5, tools

    _refuse_overwrite(out, force)
    c = hdf5.load(path)
    new = tools.extract(c, pattern)
    hdf5.save(out, new)
    click.echo(f"wrote {out}: {len(new.variables)} of {len(c.variables)} variables")
    for n in new.variables:
        click.echo(f"  {n}")


@ckpt.command("merge")
@click.argument("a", type=ckpt_path)
@click.argument("b", type=ckpt_path)
@output_option
@click.option("--allow-conflicts", is_flag=True, help="Resolve variables both hold with different values.")
@click.option("--prefer", type=click.Choice(["a", "b"]), default="a", show_default=True,
              help="Which file wins a conflict.")
@force_option
@handle_errors
def ckpt_merge(a, b, out, allow_conflicts, prefer, force):
    """The union of two checkpoints (A's spec); conflicting variables are refused unless allowed."""
    from ..ckpt import hdf5, tools

    _refuse_overwrite(out, force)
    ca, cb = hdf5.load(a), hdf5.load(b)
    new = tools.merge(ca, cb, allow_conflicts, prefer)
    hdf5.save(out, new)
    rec = new.state["derived"][-1]
    only_b = sum(n not in ca.variables for n in cb.variables)
    msg = f"wrote {out}: {len(new.variables)} variables ({only_b} only in B"
    if rec["conflicts"]:
        msg += f"; {rec['conflicts']} conflicts resolved in favour of {prefer.upper()}"
    click.echo(msg + ")")


from .interchange import export_cmd, import_cmd  # noqa: E402

ckpt.add_command(export_cmd)
ckpt.add_command(import_cmd)
