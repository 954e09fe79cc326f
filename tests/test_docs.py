"""Every `dnn` example in the docs parses and checks, so the docs cannot drift from the grammar."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dnnspec.check import check_text
from dnnspec.errors import SpecError
from dnnspec.syntax.fmt import format_spec
from dnnspec.syntax.parser import parse

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```dnn\n(.*?)^```", re.S | re.M)
# README shows an unlabelled spec block too: treat a ``` block starting with a comment or `let`/`model` as dnn
PLAIN = re.compile(r"^```\n((?:#|let |model ).*?)^```", re.S | re.M)


def examples():
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for i, m in enumerate([*FENCE.finditer(text), *PLAIN.finditer(text)]):
            line = text[: m.start()].count("\n") + 2
            out.append(pytest.param(m.group(1), f"{doc.name}:{line}", id=f"{doc.name}:{line}"))
    return out


EXAMPLES = examples()


def test_docs_have_examples():
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("text,where", EXAMPLES)
def test_doc_example_checks_and_is_formatted(text, where):
    program = check_text(text, where)
    assert program.ops
    assert format_spec(parse(text)) == text, f"{where} is not in canonical form"


# ---------------------------------------------------------------- `--set` examples

# `--set KEY=VALUE` in running text or a table; the Overrides section of docs/language.md lists
# more, as bare `KEY=VALUE` items.
SET_EXAMPLE = re.compile(r"--set\s+([^\s`|]+=[^\s`|]*)")
# fenced blocks other than commands (specs, error output) hold no examples to run
FENCED = re.compile(r"^```(\w*)\n.*?^```", re.S | re.M)


def _prose_and_commands(text: str) -> str:
    return FENCED.sub(lambda m: m.group(0) if m.group(1) in ("console", "bash", "sh", "shell") else "", text)
OVERRIDES_SECTION = re.compile(r"^## Overrides\n(.*?)(?=^## )", re.S | re.M)
SECTION_ITEM = re.compile(r"`([A-Za-z_][\w.]*=[^`]+)`")


def _placeholder(example: str) -> bool:
    """`--set KEY=VALUE`, `--set data.path=...`, `--set train.seed=N`: a form, not an example."""
    key, _, value = example.partition("=")
    return key.isupper() or value in ("", "...") or re.fullmatch(r"[A-Z_]+", value) is not None


def set_examples():
    out = {}
    for doc in DOCS:
        text = _prose_and_commands(doc.read_text())
        found = [m.group(1) for m in SET_EXAMPLE.finditer(text)]
        for section in OVERRIDES_SECTION.finditer(text):
            found += SECTION_ITEM.findall(section.group(1))
        for example in found:
            if not _placeholder(example):
                out.setdefault(example, doc.name)
    return sorted(out.items())


SET_EXAMPLES = set_examples()
SPECS = sorted((ROOT / "specs").glob("*.dnn"), key=lambda p: (p.name != "quickstart.dnn", p.name))


def _suits(spec, key: str) -> bool:
    """Whether a spec has what the override's key names: a `let`, or data with that parameter."""
    from dnnspec.syntax import ast

    path = key.split(".")
    if path[0] == "train":
        return True
    if path[0] == "pretrain":
        return any(s.key == "pretrain" for s in spec.of_type(ast.Setting))
    if path[0] == "data":
        from dnnspec.registry import REGISTRIES

        datas = spec.of_type(ast.Data)
        if not datas or datas[0].source.name not in REGISTRIES["dataset"]:
            return False
        return REGISTRIES["dataset"].get(datas[0].source.name).param(path[-1]) is not None
    return path[-1] in {s.name for s in spec.of_type(ast.Let)}


def test_docs_have_set_examples():
    examples = dict(SET_EXAMPLES)
    assert len(examples) >= 8
    for wanted in ("data.path=/data/mnist.npz", "train.optimizer.lr=0.01", "hidden=500"):
        assert wanted in examples


@pytest.mark.parametrize("example,doc", SET_EXAMPLES, ids=[e for e, _ in SET_EXAMPLES])
def test_set_example_is_accepted(example, doc):
    """Each `--set` example of the docs passes the checker on a shipped spec that has what the
    key names (specs/*.dnn first, else the docs' own example specs: `hidden` is a `let` of the
    README's spec)."""
    from dnnspec import catalog

    catalog.load()
    key = example.partition("=")[0]
    candidates = [(p.read_text(), f"specs/{p.name}") for p in SPECS]
    candidates += [(p.values[0], p.values[1]) for p in EXAMPLES]
    text, where = next(((t, w) for t, w in candidates if _suits(parse(t), key)), (None, None))
    assert text is not None, f"{doc}: no spec has what `--set {example}` names"
    program = check_text(text, where, [example])
    value = example.partition("=")[2]
    assert value.strip('"') in program.canonical, f"{doc}: `--set {example}` on {where} changed nothing"


def test_override_error_examples_are_what_dnnspec_prints():
    """The docs show an override's error as dnnspec prints it (any spec: the value is at fault)."""
    shown = [(doc.name, m.group(0)) for doc in DOCS
             for m in re.finditer(r"(?<=^```\n)--set .*?(?=^```)", doc.read_text(), re.S | re.M)]
    assert shown
    spec = (ROOT / "specs" / "quickstart.dnn").read_text()
    for name, block in shown:
        override = block.split(":", 1)[0].removeprefix("--set ")
        with pytest.raises(SpecError) as info:
            check_text(spec, "specs/quickstart.dnn", [override])
        assert str(info.value).startswith(block), f"{name}: the example differs from\n{info.value}"


# ---------------------------------------------------------------- README commands = CI

def readme_commands() -> list[str]:
    """The README's set-up and test command lines, read as ../shared/tools/readme-commands reads
    them: the first console block with `pip install`, then the first running `pytest`."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:console|bash|sh|shell)?\n(.*?)```", text, re.S)

    def lines(b):
        return [ln[2:] if ln.startswith("$ ") else ln for ln in b.strip().splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")]

    first = next(b for b in blocks if any("pip install" in ln for ln in lines(b)))
    tests = next(b for b in blocks if any(re.search(r"(^|[ ;&])pytest", ln) for ln in lines(b)))
    return lines(first) + ([] if tests is first else lines(tests))


def test_readme_commands_install_what_they_use():
    commands = readme_commands()
    assert len(commands) == 2
    setup, tests = commands
    assert setup.startswith("pip install -e . && ") and "dnnspec run specs/quickstart.dnn" in setup
    # a fresh machine has no pytest: the test command installs it (the `test` extra) first
    assert re.match(r'pip install -e "\.\[test(,[a-z]+)*\]" && pytest$', tests), tests


def test_ci_runs_the_readme_commands_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    code = [ln.strip() for ln in ci if ln.strip() and not ln.lstrip().startswith("#")]
    for command in readme_commands():
        assert command in code, f".ci/run does not run the README's line: {command}"


def test_test_extra_covers_the_default_suite():
    """Every third-party module the tests import unconditionally (not via importorskip) is a
    dependency or in the `test` extra, so `pip install -e ".[test]" && pytest` works anywhere."""
    import ast as pyast
    import sys

    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")
                for req in [*project["dependencies"], *project["optional-dependencies"]["test"]]}
    local = {p.stem for p in (ROOT / "tests").glob("*.py")} | {"dnnspec"}
    needed = set()
    for path in (ROOT / "tests").glob("*.py"):
        for node in pyast.parse(path.read_text()).body:  # module level only: lazy imports are guarded
            if isinstance(node, pyast.Import):
                needed |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, pyast.ImportFrom) and node.level == 0 and node.module:
                needed.add(node.module.split(".")[0])
    third_party = {m for m in needed if m not in sys.stdlib_module_names and m not in local and m != "__future__"}
    assert "pytest" in third_party
    assert {m.lower().replace("_", "-") for m in third_party} <= declared, third_party - declared
