"""`dnnspec ckpt export` and `dnnspec ckpt import`: checkpoints to and from Keras, PyTorch, ONNX, NumPy.

The interchange functions (`dnnspec.ckpt.interchange`) know programs and variables, not the
`Model` API; these commands do the orchestration: load the checkpoint (or compile the spec) with
`dnnspec.api`, convert, and save. Every file they write goes through `dnnspec.fileio.atomic_write`.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..ckpt.interchange import EXPORT_FORMATS, FORMATS, IMPORT_FORMATS
from .common import handle_errors, overrides_option

# Input files: a folder given where a file is expected is reported by the reader (exit 1, naming it).
input_path = click.Path()


def _beside(out: Path, fmt: str, suffix: str) -> Path:
    """`tiny.weights.h5` -> `tiny.py`: the format's ending replaced."""
    name = out.name
    ending = FORMATS[fmt].suffix
    stem = name[: -len(ending)] if name.endswith(ending) and len(name) > len(ending) else Path(name).stem
    return out.with_name(stem + suffix)


@click.command("export")
@click.argument("checkpoint", type=input_path)
@click.option("--to", "fmt", type=click.Choice(EXPORT_FORMATS), default=None,
              help="Target format (default: from the output file name).")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False), help="The file to write.")
@click.option("--code", is_flag=True,
              help="Also write the equivalent Keras/PyTorch model definition (OUT's stem + .py).")
@click.option("--config", is_flag=True, help="keras, keras2: also write the Keras model config JSON (needs Keras).")
@click.option("--probabilities", is_flag=True,
              help="End with the loss's output function (softmax/sigmoid), as `predict` does; default: logits.")
@click.option("--fold-batchnorm", is_flag=True, help="onnx: fold batch norm into the dense layer before it.")
@click.option("--opset", type=int, default=None, help="onnx: the opset to target (default 17; Gelu is native from 20).")
@click.option("--force", is_flag=True, help="Replace existing output files of the same format.")
@handle_errors
def export_cmd(checkpoint, fmt, out, code, config, probabilities, fold_batchnorm, opset, force):
    """Export a dnnspec checkpoint: keras (.weights.h5), keras2 (.h5), torch (.safetensors), onnx, npz."""
    from ..api import load_checkpoint
    from ..ckpt import interchange as ix
    from ..errors import UserError
    from ..fileio import check_output, write_text

    out = Path(out)
    fmt = fmt or ix.guess_format(out, EXPORT_FORMATS)
    options = {"probabilities": probabilities}
    if fmt == "onnx":
        options["fold_batchnorm"] = fold_batchnorm
        if opset is not None:
            options["opset"] = opset
    elif fold_batchnorm or opset is not None:
        raise UserError("--fold-batchnorm and --opset apply to onnx exports only")
    if config and not fmt.startswith("keras"):
        raise UserError("--config applies to keras and keras2 exports only")
    if code and not FORMATS[fmt].code:
        raise UserError(f"--code: {fmt} files carry their own graph; model code is written for keras, keras2, torch")
    check_output(out, lambda p: ix.is_export(p, fmt), f"{fmt} file", force)
    for wanted, suffix in ((code, ".py"), (config, ".json")):
        if wanted:
            check_output(_beside(out, fmt, suffix), ix.is_generated, "model definition", force)
    model = load_checkpoint(checkpoint)
    ix.export_model(model.program, model.variables, fmt, out, step=model.step, **options)
    click.echo(f"wrote {out} ({FORMATS[fmt].description})")
    if code:
        path = write_text(_beside(out, fmt, ".py"),
                          ix.model_code(model.program, fmt, weights=str(out), probabilities=probabilities))
        click.echo(f"wrote {path} (the model definition; it loads {out})")
    if config:
        from ..ckpt.interchange.keras import keras_config_json

        path = write_text(_beside(out, fmt, ".json"), keras_config_json(model.program, probabilities))
        click.echo(f"wrote {path} (keras.models.model_from_json rebuilds the model)")


@click.command("import")
@click.argument("source", type=input_path)
@click.option("--from", "fmt", type=click.Choice(IMPORT_FORMATS), default=None,
              help="Source format (default: from the file name).")
@click.option("--spec", required=True, type=click.Path(dir_okay=False), help="The spec of the model to fill.")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="The dnnspec checkpoint to write.")
@click.option("--scope", default=None, metavar="PATTERN",
              help="Import only variables whose dnnspec name matches this regex from the start, e.g. 'dnn/hidden[12]'; "
                   "the others keep their initial values.")
@click.option("--force", is_flag=True, help="Replace an existing dnnspec checkpoint at -o.")
@overrides_option
@handle_errors
def import_cmd(source, fmt, spec, out, scope, overrides, force):
    """Fill a spec's variables from a Keras, PyTorch (safetensors) or .npz file; write a dnnspec checkpoint."""
    from ..api import compile_file
    from ..ckpt import hdf5
    from ..ckpt import interchange as ix
    from ..fileio import check_output

    fmt = fmt or ix.guess_format(source, IMPORT_FORMATS)
    check_output(out, hdf5.is_checkpoint, "checkpoint", force)
    model = compile_file(spec, overrides)
    report = ix.import_into(model.program, model.variables, fmt, source, scope)
    model.save(out)
    click.echo(report.text())
    click.echo(f"wrote {out}")
