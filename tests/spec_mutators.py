"""Hostile specs for the checker: seeds (the shipped specs, the docs' examples, the bad specs)
and mutators (token deletion, duplication, swap, random unicode, huge numbers, deep nesting,
hostile snippets). Shared by tests/test_hostile_specs.py (hypothesis, a few seconds) and
benchmarks/fuzz_specs.py (a time budget, prints crashers).

The property both hold: `dnnspec.check.check_text` returns a Program or raises SpecError or
UserError (never another exception), within a time bound; and `dnnspec fmt` (format_spec of a
spec that parses) prints text that parses to the same AST.
"""

from __future__ import annotations

import random
import re
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- seeds

_FENCE = re.compile(r"^```dnn\n(.*?)^```", re.S | re.M)
_PLAIN = re.compile(r"^```\n((?:#|let |model ).*?)^```", re.S | re.M)


def seeds() -> list[str]:
    """Every spec the project ships or documents, and the bad specs of the checker's tests."""
    out = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "specs").glob("*.dnn"))]
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        out += [m.group(1) for m in [*_FENCE.finditer(text), *_PLAIN.finditer(text)]]
    out += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "tests" / "bad_specs").glob("*.dnn"))]
    return out


# ---------------------------------------------------------------- tokens

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|\*\*|[A-Za-z_][A-Za-z0-9_]*|\d+\.?\d*(?:[eE][+-]?\d+)?|\n|[ \t]+|.',
                    re.S)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _significant(toks: list[str]) -> list[int]:
    return [i for i, t in enumerate(toks) if not t.isspace()] or list(range(len(toks)))


WORDS = ["model", "input", "scope", "repeat", "block", "let", "data", "train", "dense", "relu", "elu", "dropout",
         "batchnorm", "maxout", "softmax", "adam", "sgd", "loss", "optimizer", "schedule", "epochs", "batch",
         "freeze", "trainable", "reuse", "collection", "on", "true", "false", "x", "n", "auto", "he_normal",
         "use_bias", "activation", "init", "momentum", "lr", "cosine", "early_stopping", "checkpoint", "xor",
         "spirals", "mnist", "npz", "csv", "validation", "seed", "average", "lr_mult", "clip_norm"]

UNICODE = ["\ufeff", "\u00e9", "\u00df", "\u0391", "\u4e2d", "\U0001f600", "\u200b", "\u202e", "\u0301", "\u2028",
           "\u2029", "\x85", "\x00", "\x0b", "\x0c", "\r", "\t", "\x1b", "\x7f", "\ufffd", "\uff13", "\u0663", "\u00b2",
           "\u2212", "\u00a0", "\u3000", "\\", '"', "#", "{", "}", "(", ")", "[", "]", ",", "=", "*", "/", "+", "-",
           ".", "\n"]

HUGE = ["10**400", "10**10**10", "9" * 400, "1e400", "1e308*10", "-1e308*10", "1e308+1e308", "2**63", "2**64",
        "9223372036854775807", "9223372036854775808", "-9223372036854775808", "1e-400", "0", "-0", "0.0", "1/0",
        "0**-1", "(-8)**(1/3)", "10**-400", "2**0.5", "1e308/1e-10", "9" * 5000, "0" * 5000 + "1", "1." + "0" * 5000,
        "100000", "100001", "2**31", "2**40", ".5e309", "nan", "inf"]

SNIPPETS = [
    "repeat 100000 {\n relu\n}\n",
    "repeat 1000 {\n repeat 1000 {\n relu\n }\n}\n",
    "repeat 100000 {\n repeat 100000 {\n }\n}\n",
    "repeat 99999 {\n dense(4)\n relu\n}\n",
    "dense(100000)\ndense(100000)\n",
    "dense(2" + ", use_bias=true" * 2000 + ")\n",
    "rleu\n" * 300,
    "input y[4]\n",
    "scope s {\n}\n",
    'freeze "' + "(" * 600 + ')" \n',
    'freeze "(a*)*b"\n',
    'freeze "[" \n',
    'collection c = [' + ", ".join(f"n{i}" for i in range(300)) + "]\n",
    "let n = " + "+".join(["1"] * 150) + "\n",
    "let n = " + "(" * 300 + "1" + ")" * 300 + "\n",
    "let n = " + "-" * 300 + "1\n",
    "let n = " + "f(" * 120 + ")" * 120 + "\n",
    "let n = " + "[" * 120 + "]" * 120 + "\n",
    "data d = csv(path=\"\\x00\", label=\"\\u0000\")\n",
    'checkpoint "\\n\\r\\t\\x00" best=val_loss\n',
    "train {\n" + "epochs 1\n" * 200 + "}\n",
]


def _wrap(depth: int, open_: str, close: str, inner: str) -> str:
    return open_ * depth + inner + close * depth


# ---------------------------------------------------------------- mutators

Mutator = Callable[[str, random.Random], str]


def delete_token(text: str, r: random.Random) -> str:
    toks = tokens(text)
    if not toks:
        return text
    i = r.choice(_significant(toks))
    return "".join(toks[:i] + toks[i + 1:])


def duplicate_token(text: str, r: random.Random) -> str:
    toks = tokens(text)
    if not toks:
        return text
    i = r.choice(_significant(toks))
    n = r.choice([1, 2, 10, 1000])
    return "".join(toks[:i] + [toks[i]] * (n + 1) + toks[i + 1:])


def swap_tokens(text: str, r: random.Random) -> str:
    toks = tokens(text)
    sig = _significant(toks)
    if len(sig) < 2:
        return text
    i, j = r.sample(sig, 2)
    toks[i], toks[j] = toks[j], toks[i]
    return "".join(toks)


def replace_word(text: str, r: random.Random) -> str:
    toks = tokens(text)
    names = [i for i, t in enumerate(toks) if re.fullmatch(r"[A-Za-z_]\w*", t)]
    if not names:
        return text
    toks[r.choice(names)] = r.choice(WORDS)
    return "".join(toks)


def insert_unicode(text: str, r: random.Random) -> str:
    at = r.randrange(len(text) + 1)
    ch = r.choice(UNICODE) if r.random() < 0.7 else chr(r.choice([r.randrange(32, 0x250), r.randrange(0x250, 0xD800),
                                                                 r.randrange(0xE000, 0x110000)]))
    return text[:at] + ch * r.choice([1, 1, 1, 3]) + text[at:]


def huge_number(text: str, r: random.Random) -> str:
    toks = tokens(text)
    nums = [i for i, t in enumerate(toks) if re.fullmatch(r"\d+\.?\d*(?:[eE][+-]?\d+)?", t)]
    if not nums:
        return insert_snippet(text, r)
    toks[r.choice(nums)] = r.choice(HUGE)
    return "".join(toks)


def deep_nesting(text: str, r: random.Random) -> str:
    """Wrap a line's layer in scopes or repeats, or an expression in brackets, calls, lists,
    minus signs or a long sum, to a depth around the limits (100) or far beyond."""
    depth = r.choice([50, 99, 100, 101, 150, 400, 1200])
    lines = text.split("\n")
    i = r.randrange(len(lines))
    line = lines[i]
    kind = r.randrange(7)
    if kind == 0:
        lines[i] = _wrap(depth, "scope s {\n", "}\n", line + "\n")
    elif kind == 1:
        lines[i] = _wrap(depth, "repeat 1 {\n", "}\n", line + "\n")
    else:
        nums = [m for m in re.finditer(r"\b\d+(?:\.\d+)?\b", line)]
        if not nums:
            lines[i] = _wrap(depth, "scope s {\n", "}\n", line + "\n")
        else:
            m = r.choice(nums)
            v = m.group(0)
            expr = {2: lambda: _wrap(depth, "(", ")", v), 3: lambda: "-" * depth + v,
                    4: lambda: "+".join([v] * depth), 5: lambda: _wrap(depth, "max(", ")", v),
                    6: lambda: _wrap(depth, "[", "]", v)}[kind]()
            lines[i] = line[:m.start()] + expr + line[m.end():]
    return "\n".join(lines)


def block_chain(text: str, r: random.Random) -> str:
    """Blocks that use each other `depth` deep (the nesting no parser sees)."""
    depth = r.choice([50, 99, 101, 400])
    defs = "block b0(n) {\n    dense(n)\n}\n" + "".join(f"block b{k}(n) {{\n    b{k - 1}(n)\n}}\n"
                                                        for k in range(1, depth))
    return defs + re.sub(r"^(\s*)dense\b", rf"\1b{depth - 1}", text, count=1, flags=re.M)


def insert_snippet(text: str, r: random.Random) -> str:
    lines = text.split("\n")
    i = r.randrange(len(lines) + 1)
    return "\n".join(lines[:i] + [r.choice(SNIPPETS)] + lines[i:])


def duplicate_lines(text: str, r: random.Random) -> str:
    lines = text.split("\n")
    i = r.randrange(len(lines))
    j = min(len(lines), i + r.choice([1, 2, 5]))
    return "\n".join(lines[:j] + lines[i:j] * r.choice([1, 10, 200]) + lines[j:])


def splice(text: str, r: random.Random, others: list[str] | None = None) -> str:
    other = r.choice(others or SEEDS)
    a, b = text.split("\n"), other.split("\n")
    i, j = r.randrange(len(a) + 1), r.randrange(len(b) + 1)
    k = r.randrange(j, len(b) + 1)
    return "\n".join(a[:i] + b[j:k] + a[i:])


def truncate(text: str, r: random.Random) -> str:
    return text[: r.randrange(len(text) + 1)]


MUTATORS: list[Mutator] = [delete_token, duplicate_token, swap_tokens, replace_word, insert_unicode, huge_number,
                           deep_nesting, block_chain, insert_snippet, duplicate_lines, splice, truncate]

SEEDS = seeds()


def mutate(seed_index: int, steps: list[tuple[int, int]]) -> str:
    """Seed `seed_index` after the mutators `steps` = [(mutator index, random seed), ...]."""
    text = SEEDS[seed_index % len(SEEDS)]
    for which, rseed in steps:
        text = MUTATORS[which % len(MUTATORS)](text, random.Random(rseed))
    return text


def random_spec(r: random.Random, max_steps: int = 4) -> str:
    return mutate(r.randrange(len(SEEDS)), [(r.randrange(len(MUTATORS)), r.randrange(2**32))
                                            for _ in range(r.randint(1, max_steps))])


# ---------------------------------------------------------------- the property

class Hang(Exception):
    """The time bound passed (SIGALRM interrupted the check)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise Hang in the main thread after `seconds` (where SIGALRM exists; else no limit)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check_outcome(text: str, seconds: float = 10.0) -> tuple[str, float]:
    """('ok' | 'spec-error' | 'user-error', seconds) for a spec; raises anything else (a bug),
    including Hang past the time bound. Also formats what parses and requires the formatted
    text to parse to the same AST (the `dnnspec fmt` guarantee)."""
    from dnnspec.check import check_text
    from dnnspec.errors import SpecError, UserError
    from dnnspec.syntax.fmt import format_spec
    from dnnspec.syntax.parser import parse

    start = time.perf_counter()
    with time_limit(seconds):
        try:
            check_text(text, "fuzz.dnn")
            outcome = "ok"
        except SpecError as e:
            str(e)  # the report renders
            outcome = "spec-error"
        except UserError:
            outcome = "user-error"
        try:
            spec = parse(text, "fuzz.dnn")
        except SpecError:
            pass
        else:
            out = format_spec(spec)
            again = parse(out, "fmt.dnn")
            if again != spec:
                raise AssertionError("fmt changed the meaning of the spec")
            if format_spec(again) != out:
                raise AssertionError("fmt is not idempotent")
    return outcome, time.perf_counter() - start
