"""`dnnspec augment`: a grid of augmented training examples, to see what `augment=[...]` does."""

from __future__ import annotations

import click

from .common import handle_errors, overrides_option


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False),
              help="The figure to write (.png, .svg or .pdf).")
@overrides_option
@click.option("--rows", type=click.IntRange(1, 50), default=6, show_default=True, help="Examples, one per row.")
@click.option("--cols", type=click.IntRange(1, 50), default=8, show_default=True,
              help="Augmented versions of each, beside the original.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the examples' choice and of the augmentation draws.")
@click.option("--force", is_flag=True, help="Replace an existing figure.")
@handle_errors
def augment(spec, out, overrides, rows, cols, seed, force):
    """Draw training examples of SPEC and augmented versions of them.

    The first column holds examples of the training split as loaded (chosen at random with
    --seed), each further column one draw of the spec's `augment=[...]`, exactly as training
    applies it to a batch."""
    import numpy as np

    from .. import api
    from ..augment import Augmenter
    from ..check import check_file
    from ..check.lints import component_text
    from ..errors import UserError
    from ..plots import augment_grid, check_figure, pyplot, save
    from ..rng import stream

    pyplot()  # matplotlib missing: said before any work
    check_figure(out, force)
    program = check_file(spec, overrides)
    if program.data is None:
        raise UserError(f"{spec}: the spec has no `data` declaration, so there is nothing to augment")
    if program.augment is None:
        raise UserError(f"{spec}: the data declares no augmentation: add augment=[...] to `{program.data.name}(...)`, "
                        "e.g. augment=[shift(2), rotate(10)] (`dnnspec check --list` lists them)")
    x = api.Model(program, apply_reuse=False).load_data().train[0]
    rows = min(rows, len(x))
    originals = x[np.sort(stream(seed, "augment-figure").choice(len(x), rows, replace=False))]
    augmenter = Augmenter.of(program.augment, program.input_width, stream(seed, "augment"))
    augmented = []
    for _ in range(cols):
        batch = originals.copy()
        augmenter(batch)
        augmented.append(batch)
    steps = "augment=[" + ", ".join(component_text(c, defaults=True) for c in program.augment.steps) + "]"
    image = program.augment.image or (1, program.input_width)
    fig = augment_grid(originals, augmented, image, f"{program.model_name}: augmented training examples", steps)
    save(fig, out, force)
    click.echo(f"figure written to {out} ({rows} examples x {cols} augmented versions)")
