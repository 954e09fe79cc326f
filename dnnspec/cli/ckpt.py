"""`dnnspec ckpt ...`: inspect and manage HDF5 checkpoints."""

from __future__ import annotations

import json

import click

from .common import handle_errors


@click.group()
def ckpt():
    """Inspect and manage HDF5 checkpoints."""


@ckpt.command("show")
@click.argument("path", type=click.Path(dir_okay=False))
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
        click.echo(f"epoch: {st.get('epoch')}  global_step: {st.get('global_step')}  best: {st.get('best')}")
    if c.optimizer:
        click.echo(f"optimizer: {c.optimizer['name']} {json.dumps(c.optimizer['hyperparameters'])} "
                   f"step {c.optimizer['step']} slots {sorted(c.optimizer['slots'])}")
    click.echo(f"variables ({len(c.variables)}):")
    width = max((len(n) for n in c.variables), default=0)
    for name, rec in c.variables.items():
        flags = "trainable" if rec.trainable else "fixed"
        cols = f"  [{', '.join(rec.collections)}]" if rec.collections else ""
        click.echo(f"  {name:<{width}}  {str(rec.value.shape):<12} {rec.value.dtype}  {flags}{cols}")
    if c.collections:
        click.echo("collections:")
        for cname, names in c.collections.items():
            click.echo(f"  {cname}: {', '.join(names)}")
    if c.history:
        last = c.history[-1]
        click.echo("last epoch: " + "  ".join(f"{k} {v:.4g}" for k, v in last.items()))


