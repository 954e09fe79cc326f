"""`dnnspec ckpt export` and `dnnspec ckpt import`: checkpoints to and from Keras, PyTorch, ONNX, NumPy.

The interchange functions (`dnnspec.ckpt.interchange`) know programs and variables, not the
`Model` API; these commands do the orchestration: load the checkpoint (or compile the spec) with
`dnnspec.api`, convert, and save. Every file they write goes through `dnnspec.fileio.atomic_write`.

`ckpt import --write-spec` renders what a model file records (`describe.ModelInfo`: a neutral
list of layers) as `.dnn` text here, in the CLI, checks it with `dnnspec.check.check_text` and
formats it with `dnnspec.syntax.fmt.format_spec`, as `dnnspec fmt` does.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import click

from ..ckpt.interchange import EXPORT_FORMATS, FORMATS, IMPORT_FORMATS
from ..errors import UserError
from .common import handle_errors, overrides_option

# Input files: a folder given where a file is expected is reported by the reader (exit 1, naming it).
input_path = click.Path()


def _beside(out: Path, fmt: str, suffix: str) -> Path:
    """`tiny.weights.h5` -> `tiny.keras.py`: the format's ending replaced (`suffix` ".keras.py")."""
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
              help="Also write the equivalent Keras/PyTorch model definition, named after the format: OUT's stem + "
                   ".keras.py, .keras2.py or .torch.py.")
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
    code_suffix = f".{fmt}.py"  # x.weights.h5 and x.safetensors beside each other get x.keras.py, x.torch.py
    for wanted, suffix in ((code, code_suffix), (config, ".json")):
        if wanted:
            check_output(_beside(out, fmt, suffix), ix.is_generated, "model definition", force)
    model = load_checkpoint(checkpoint)
    ix.export_model(model.program, model.variables, fmt, out, step=model.step, **options)
    click.echo(f"wrote {out} ({FORMATS[fmt].description})")
    if code:
        path = write_text(_beside(out, fmt, code_suffix),
                          ix.model_code(model.program, fmt, weights=str(out), probabilities=probabilities))
        click.echo(f"wrote {path} (the model definition; it loads {out})")
    if config:
        from ..ckpt.interchange.keras import keras_config_json

        path = write_text(_beside(out, fmt, ".json"), keras_config_json(model.program, probabilities))
        click.echo(f"wrote {path} (keras.models.model_from_json rebuilds the model)")


# ---------------------------------------------------------------- spec text from a model description
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEYWORDS = {"input", "scope", "repeat", "model", "block", "let", "data", "train", "true", "false", "on"}
POSITIONAL = {"dense": "units", "maxout": "units", "dropconnect": "units", "dropout": "rate", "alpha_dropout": "rate"}
HEADER = "# Written by `dnnspec ckpt import"


def _identifier(text: str | None) -> bool:
    return bool(text) and NAME.fullmatch(text) is not None and text not in KEYWORDS


def _name_parts(name: str | None) -> list[str] | None:
    """`dnn/hidden1` -> [dnn, hidden1]; None if a part cannot be a spec name."""
    if not name:
        return None
    parts = name.split("/")
    return parts if all(_identifier(p) for p in parts) else None


def _call(kind: str, params: dict) -> str:
    """`dense(64, use_bias=false)`: parameters equal to the catalogue's defaults left out."""
    from ..registry import REGISTRIES
    from ..syntax.fmt import format_number

    registry = REGISTRIES["layer"] if kind in REGISTRIES["layer"] else REGISTRIES["activation"]
    entry = registry.get(kind)
    args = []
    for key, value in params.items():
        param = entry.param(key)
        if param is None:
            continue
        if not param.required and (value == param.default or (
                isinstance(value, float) and isinstance(param.default, (int, float))
                and not isinstance(param.default, bool) and math.isclose(value, param.default, rel_tol=1e-9))):
            continue
        text = str(value).lower() if isinstance(value, bool) else format_number(value)
        args.append(text if POSITIONAL.get(kind) == key else f"{key}={text}")
    return f"{kind}({', '.join(args)})" if args else kind


def render_spec(info, source_path, fmt: str, loss: str | None, rest: str, default_name: str,
                lets: str = "") -> tuple[str, list[str]]:
    """(.dnn text of the model a file records, notes). `loss`: the loss of the spec's `train`
    (None: chosen here from the file's final softmax/sigmoid, if any); `lets`, `rest`: the `let`
    statements to put first and the `data` and `train` statements to append (from --spec), or ""."""
    from ..catalog import load
    from ..ckpt.interchange.describe import OUTPUT_LOSSES, split_output

    load()
    notes = list(info.notes)
    layers, fn = split_output(info.layers, loss)
    if fn:
        notes.append(f"the file ends in {fn}: in dnnspec that is the loss's output function "
                     f"({OUTPUT_LOSSES[fn]}), not a layer; `dnnspec eval` and `predict` apply it")
    if loss is None:
        loss = OUTPUT_LOSSES.get(fn) or info.loss
        if loss is None:
            loss = "softmax_cross_entropy"
            notes.append("the file does not say how its outputs are used: the written spec's loss is "
                         "softmax_cross_entropy (edit `loss` for another task)")
    if info.input_width is None:
        raise UserError(f"{source_path}: the file does not record the input width; give the model with --spec SPEC")
    model = info.name if _identifier(info.name) else default_name
    x = info.input_name if _identifier(info.input_name) else "x"
    lines = [f"{HEADER} {source_path} --from {fmt} --write-spec`, from {info.source}."]
    lines += [lets.rstrip("\n"), ""] if lets else []
    lines += [f"model {model} {{", f"    input {x}[{info.input_width}]"]
    open_scopes: list[str] = []
    taken: dict[str, set] = {}  # what the checker's naming will hold: prefix -> names (scopes and layers)
    next_auto: dict[tuple[str, str], int] = {}

    def auto(prefix: str, base: str, claim: bool = True) -> str:  # the checker's Keras-style `base`, `base_1`, ...
        names = taken.setdefault(prefix, set())
        n = next_auto.get((prefix, base), 0)
        while (name := base if n == 0 else f"{base}_{n}") in names:
            n += 1
        if claim:
            names.add(name)
            next_auto[(prefix, base)] = n + 1
        return name

    def joined(scopes: list[str]) -> str:
        return "".join(f"{s}/" for s in scopes)

    i = 0
    while i < len(layers):
        la = layers[i]
        i += 1
        act = None
        if la.kind in ("dense", "dropconnect") and i < len(layers) and layers[i].merge:
            act = layers[i]
            i += 1
        parts = _name_parts(la.name)
        if parts:
            scopes, leaf = parts[:-1], parts[-1]
            common = 0
            while common < min(len(scopes), len(open_scopes)) and scopes[common] == open_scopes[common]:
                common += 1
            if any(scopes[k] in taken.get(joined(scopes[:k]), ()) for k in range(common, len(scopes))) \
                    or leaf in taken.get(joined(scopes), ()):
                parts = None  # a scope or name already used: let the checker name it
        if not parts:
            scopes, leaf = open_scopes, None
        common = 0
        while common < min(len(scopes), len(open_scopes)) and scopes[common] == open_scopes[common]:
            common += 1
        for depth in range(len(open_scopes), common, -1):
            lines.append("    " * depth + "}")
        for depth, scope in enumerate(scopes[common:], start=common + 1):
            lines.append("    " * depth + f"scope {scope} {{")
            taken.setdefault(joined(scopes[:depth - 1]), set()).add(scope)
        open_scopes = list(scopes)
        prefix = joined(scopes)
        if leaf is not None and auto(prefix, la.kind, claim=False) == leaf:
            leaf = None  # the name the checker gives it anyway
        if leaf is None:
            auto(prefix, la.kind)
        else:
            taken.setdefault(prefix, set()).add(leaf)
        call = _call(la.kind, la.params)
        if act is not None:
            activation = f"activation={_call(act.kind, act.params)}"
            call = f"{call[:-1]}, {activation})" if call.endswith(")") else f"{call}({activation})"
        head, _, args = call.partition("(")
        text = head + (f" {leaf}" if leaf else "") + (f"({args}" if args else "")
        lines.append("    " * (len(open_scopes) + 1) + text)
    for depth in range(len(open_scopes), 0, -1):
        lines.append("    " * depth + "}")
    lines.append("}")
    text = "\n".join(lines) + "\n\n" + (rest or f"train {{\n    loss {loss}\n}}\n")
    return text, notes


def _rest_of(spec_path, program) -> tuple[str, str, list[str]]:
    """(`let` statements, `data` and `train` statements) of a spec, formatted: what a written spec
    takes from --spec (the lets only where data or train use them)."""
    from ..syntax import ast
    from ..syntax.fmt import format_spec
    from ..syntax.parser import parse

    tree = parse(program.canonical, str(spec_path))
    kept = [st for st in tree.statements if isinstance(st, (ast.Data, ast.Train))]
    body = format_spec(ast.Spec(tuple(kept))) if kept else ""
    lets = [st for st in tree.statements if isinstance(st, ast.Let)]
    needed: list = []
    for st in reversed(lets):  # a let may use an earlier one
        used = body + "".join(format_spec(ast.Spec((n,))) for n in needed)
        if re.search(rf"\b{re.escape(st.name)}\b", used):
            needed.insert(0, st)
    dropped = sorted({st.key for st in tree.statements if isinstance(st, ast.Setting)})
    notes = [f"top-level settings of {spec_path} not copied (they name its variables): {', '.join(dropped)}"] \
        if dropped else []
    return (format_spec(ast.Spec(tuple(needed))) if needed else ""), body, notes


def _mapping(pairs: tuple[str, ...], map_file: str | None) -> dict[str, str]:
    import json

    mapping: dict[str, str] = {}
    if map_file:
        try:
            data = json.loads(Path(map_file).read_text(encoding="utf-8"))
        except OSError as e:
            raise UserError(f"{map_file}: cannot read the mapping: {e.strerror or e}") from None
        except ValueError as e:
            raise UserError(f"{map_file}: not JSON: {e}") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise UserError(f'{map_file}: the mapping must be a JSON object of names, {{"SOURCE": "OP", ...}}')
        mapping.update(data)
    for pair in pairs:
        src, eq, dst = pair.partition("=")
        if not eq or not src or not dst:
            raise UserError(f"--map {pair}: give SOURCE=OP, e.g. --map encoder=dnn/hidden1")
        if src in mapping and mapping[src] != dst:
            raise UserError(f"--map {pair}: '{src}' is already mapped to '{mapping[src]}'")
        mapping[src] = dst
    return mapping


def _is_written_spec(path: Path) -> bool:
    """A spec `ckpt import --write-spec` wrote (what --force may replace)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read(len(HEADER)) == HEADER
    except (OSError, UnicodeDecodeError):
        return False


@click.command("import")
@click.argument("source", type=input_path)
@click.option("--from", "fmt", type=click.Choice(IMPORT_FORMATS), default=None,
              help="Source format (default: from the file name).")
@click.option("--spec", default=None, type=click.Path(dir_okay=False),
              help="The spec of the model to fill. With --write-spec: its data and train settings, and its model "
                   "where the file records none (weights-only files).")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="The dnnspec checkpoint to write.")
@click.option("--write-spec", "write_spec", default=None, type=click.Path(dir_okay=False),
              help="Also write a formatted, checked .dnn spec of the model the file records (Keras .keras or "
                   "whole-model .h5, ONNX, dnnspec's safetensors).")
@click.option("--scope", default=None, metavar="PATTERN",
              help="Import only variables whose dnnspec name matches this regex from the start, e.g. 'dnn/hidden[12]'; "
                   "the others keep their initial values.")
@click.option("--partial", is_flag=True,
              help="Allow tensors of the file that the spec has no place for, and variables the file does not fill "
                   "(default: an error, as torch's load_state_dict(strict=True)).")
@click.option("--map", "maps", multiple=True, metavar="SOURCE=OP",
              help="Pair the file's layer SOURCE (a module or layer name) with the spec's op OP (repeatable); "
                   "needed where the file does not state its layer order and shapes are ambiguous.")
@click.option("--map-file", default=None, type=click.Path(dir_okay=False),
              help='The --map pairs as a JSON object {"SOURCE": "OP", ...}.')
@click.option("--allow-nonfinite", is_flag=True, help="Import NaN/Inf values instead of refusing them.")
@click.option("--force", is_flag=True,
              help="Replace an existing dnnspec checkpoint at -o (and a spec --write-spec wrote).")
@overrides_option
@handle_errors
def import_cmd(source, fmt, spec, out, write_spec, scope, partial, maps, map_file, allow_nonfinite, overrides, force):
    """Fill a spec's variables from a Keras, PyTorch (safetensors), ONNX or .npz file; write a dnnspec checkpoint."""
    from ..api import Model, compile_file
    from ..check import check_text
    from ..ckpt import hdf5
    from ..ckpt import interchange as ix
    from ..ckpt.interchange.describe import compare
    from ..errors import SpecError
    from ..fileio import check_output, write_text
    from ..syntax.fmt import format_spec
    from ..syntax.parser import parse

    if spec is None and write_spec is None:
        raise click.UsageError("give --spec SPEC (the model to fill), or --write-spec OUT.dnn (to write one from "
                               "the file)")
    fmt = fmt or ix.guess_format(source, IMPORT_FORMATS)
    mapping = _mapping(maps, map_file)
    check_output(out, hdf5.is_checkpoint, "checkpoint", force)
    if write_spec is not None:
        if Path(write_spec).resolve() == Path(out).resolve():
            raise UserError("--write-spec and -o name the same file")
        check_output(write_spec, _is_written_spec, "spec", force)
    src = ix.read_source(fmt, source)
    info = src.model
    notes: list[str] = []
    text = None
    if write_spec is not None:
        if info is None:
            if spec is None:
                raise UserError(f"{source}: cannot write a spec from it: {src.lacks}; give the model with --spec SPEC "
                                "(the written spec is then that model)")
            notes.append(f"{source} does not record the model ({src.lacks}): the written spec is {spec}'s")
            model = compile_file(spec, overrides)
            text = f"{HEADER} {source} --from {fmt} --write-spec`, the model of {spec}.\n" + model.program.canonical
        else:
            lets, rest, loss = "", "", None
            if spec is not None:
                given = compile_file(spec, overrides, apply_reuse=False)
                _compare(given.program, info, spec, source, compare, notes, refuse=False)
                lets, rest, more = _rest_of(spec, given.program)
                notes += more
                loss = given.program.train.loss.name
            default = Path(write_spec).name.split(".")[0]
            text, more = render_spec(info, source, fmt, loss, rest, default if _identifier(default) else "imported",
                                     lets)
            notes += more
            try:
                text = format_spec(parse(text, str(write_spec)))
                model = Model(check_text(text, str(write_spec), overrides))
            except SpecError as e:
                given_too = f" with {spec}'s data and train settings" if spec else ""
                raise UserError(f"{source}: the spec written from {info.source}{given_too} does not check:\n{e}") \
                    from None
            text = model.program.canonical if overrides else text
    else:
        model = compile_file(spec, overrides)
        if info is not None:
            if scope or partial:
                notes.append(f"the spec is not compared with {info.source} (--scope/--partial import part of it)")
            else:
                _compare(model.program, info, spec, source, compare, notes)
    report = ix.assign(model.program, model.variables, src, scope, partial=partial, mapping=mapping,
                       allow_nonfinite=allow_nonfinite)
    model.save(out)
    if text is not None:
        write_text(write_spec, text)
    click.echo(report.text())
    for note in notes:
        click.echo(f"note: {note}")
    if text is not None:
        use = (f"`dnnspec eval {write_spec} -c {out}` evaluates it" if model.program.data is not None else
               "add a `data` line (or give --spec with one) to evaluate or train it")
        what = f"the model {source} records" if info is not None else f"the model of {spec}"
        click.echo(f"wrote {write_spec} ({what}; {use})")
    click.echo(f"wrote {out}")


def _compare(program, info, spec, source, compare, notes: list[str], refuse: bool = True) -> None:
    """Refuse a spec that computes something else than the file's model (`refuse`; else note it:
    a spec written from the file follows the file); note training-only differences."""
    errors, training = compare(program, info)
    notes += [f"differs only in training: {t}" for t in training]
    if errors and not refuse:
        notes.append(f"{spec} differs from {info.source} (the written spec follows the file):\n  "
                     + "\n  ".join(errors))
    elif errors:
        raise UserError(f"{spec} and {info.source} of {source} describe different models:\n  " + "\n  ".join(errors)
                        + "\n(fix the spec, or write one from the file with --write-spec)")
