"""Human-readable tables: the model summary (like Keras `model.summary()`) and the catalogue."""

from __future__ import annotations

import numpy as np

from .registry import LayerName


def summary_rows(model) -> list[tuple[str, str, str, int, int, str]]:
    """(layer, kinds, output shape, trainable params, non-trainable params, notes) per layer."""
    plan = model.plan
    rows: dict[str, list] = {}
    for spec in model.program.ops:
        row = rows.setdefault(spec.layer, [spec.layer, [], f"(None, {spec.n_out})", 0, 0, []])
        row[1].append(spec.kind)
        row[2] = f"(None, {spec.n_out})"
        for name in spec.variable_names():
            info = plan.infos[name]
            size = int(np.prod(info.shape))
            row[3 if info.trainable else 4] += size
            if info.declared_trainable and not info.trainable and "frozen" not in row[5]:
                row[5].append("frozen")
        row[5].extend(spec.notes)
    return [(r[0], "+".join(r[1]), r[2], r[3], r[4], "; ".join(r[5])) for r in rows.values()]


def summary_table(model) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    p = model.program
    table = Table(title=f'Model "{p.model_name}"', title_justify="left")
    for col, justify in (("Layer", "left"), ("Op", "left"), ("Output shape", "left"),
                         ("Trainable", "right"), ("Non-trainable", "right"), ("Notes", "left")):
        table.add_column(col, justify=justify)
    table.add_row(p.input_name, "input", f"(None, {p.input_width})", "0", "0", "")
    rows = summary_rows(model)
    for layer, kinds, shape, tr, nt, notes in rows:
        table.add_row(layer, kinds, shape, f"{tr:,}", f"{nt:,}", notes)
    trainable = sum(r[3] for r in rows)
    fixed = sum(r[4] for r in rows)
    buf = StringIO()
    console = Console(file=buf, width=140, color_system=None)
    console.print(table)
    console.print(f"Total params: {trainable + fixed:,}")
    console.print(f"Trainable params: {trainable:,}")
    console.print(f"Non-trainable params: {fixed:,}")
    return buf.getvalue()


def catalogue_text() -> str:
    """Every name a spec can use, with its parameters and defaults (`dnnspec check --list`)."""
    from . import catalog
    from .check.settings import TOP_KEYS, TRAIN_KEYS
    from .registry import REGISTRIES, REQUIRED, plural, type_text

    catalog.load()
    out = []
    for kind, reg in REGISTRIES.items():
        if not reg.listed:
            continue
        out.append(f"{plural(kind)}:")
        for e in reg.entries():
            params = ", ".join(p.name + (f": {type_text(p.type)}" if p.type is not REQUIRED else "")
                               + ("" if p.required else f" = {_default(p.default, p.type)}") for p in e.params)
            alias = f" (also {', '.join(e.aliases)})" if e.aliases else ""
            out.append(f"  {e.name}({params}){alias}")
            if e.doc:
                out.append(f"      {e.doc}")
        out.append("")
    for title, table in (("train settings", TRAIN_KEYS), ("top-level settings", TOP_KEYS)):
        out.append(f"{title}:")
        for key, k in table.items():
            value = f" <{type_text(k.value)}>" if k.value is not None else ""
            opts = " ".join(f"{n}=<{type_text(t)}>" for n, (t, _) in k.options.items())
            on = ' on "PATTERN"' if k.on else ""
            out.append(f"  {key}{value}{(' ' + opts) if opts else ''}{on}")
            out.append(f"      {k.doc}")
        out.append("")
    return "\n".join(out)


def _default(v, annotation=None) -> str:
    """A default as a spec would write it: `true`, `0.001`, `zeros` (a name), `""` (a string)."""
    from .syntax.fmt import format_string

    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return format_string(v) if annotation is str or isinstance(annotation, LayerName) else v
    if isinstance(v, tuple):  # a shape or a list of components: written as a list
        return "[" + ", ".join(_default(x) for x in v) + "]"
    return repr(v)
