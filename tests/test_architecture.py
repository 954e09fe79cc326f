"""The import graph flows one way: syntax -> check -> program <- plan/train/ckpt <- api <- session <- cli.

Read from the source (every `import` statement, lazy ones inside functions too), so a reach
upward anywhere fails here, not just at import time."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "dnnspec"

# module group -> the groups it must never import
NUMERIC = ("ops", "init", "optim", "lbfgs", "pretrain", "schedules", "losses", "regularizers", "datasets", "augment", "metrics",
           "plan", "train", "ckpt", "runstate", "program", "rng", "registry", "errors", "fileio", "version", "pool")
FORBIDDEN = {
    **{g: {"syntax", "check", "api", "session", "cli", "report", "catalog"} for g in NUMERIC},
    "program": {"syntax", "check", "api", "session", "cli", "report", "plan", "train", "ckpt", "runstate", "ops",
                "optim", "schedules", "datasets"},
    "syntax": {"check", "api", "session", "cli", "plan", "train", "ckpt", "runstate"},
    "check": {"api", "session", "cli", "plan", "train", "ckpt", "runstate"},
    "api": {"session", "cli"},
    "session": {"cli"},
}


def group(module: str) -> str:
    """dnnspec.train.loop -> train; dnnspec -> (root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(root)"


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """Absolute dnnspec modules a file imports, with line numbers."""
    tree = ast.parse(path.read_text())
    me = module_name(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("dnnspec")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("dnnspec"):
                continue
            if target == "dnnspec" or (node.level and not node.module):  # `from . import x`: x are modules
                out += [(f"{target}.{a.name}", node.lineno) for a in node.names]
            else:
                out.append((target, node.lineno))
    return out


def test_no_module_imports_upward():
    wrong = []
    for path in sorted(PKG.rglob("*.py")):
        mine = group(module_name(path))
        for target, line in imports(path):
            if group(target) in FORBIDDEN.get(mine, set()):
                wrong.append(f"{path.relative_to(PKG.parent)}:{line}: {mine} imports {target}")
    assert not wrong, "imports that reach upward:\n" + "\n".join(wrong)


def test_the_checker_finds_an_upward_import(tmp_path):
    # the test above can fail: a fake numeric module importing the checker is caught
    fake = PKG / "train" / "_fake_upward_probe.py"
    fake.write_text("from ..check import check_text\n")
    try:
        assert any(group(t) == "check" for t, _ in imports(fake))
    finally:
        fake.unlink()


@pytest.mark.parametrize("module", ["dnnspec.train", "dnnspec.plan", "dnnspec.ckpt", "dnnspec.runstate",
                                    "dnnspec.ckpt.interchange", "dnnspec.ckpt.tools"])
def test_importing_the_runtime_does_not_load_the_parser(module):
    code = (f"import sys, {module}; bad = [m for m in ('lark', 'dnnspec.check', 'dnnspec.syntax', 'dnnspec.api') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, f"importing {module} loaded {proc.stdout.strip()} {proc.stderr[-500:]}"
