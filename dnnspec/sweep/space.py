"""What a sweep varies: axes (`--grid PATH=a,b,c`, `--sample PATH=loguniform(lo,hi)`), the
definition of a whole sweep (from flags and/or a sweep file), its trials, and the narrowed axes
of a coarse-to-fine round.

A trial is the spec plus `--set` overrides: `PATH=VALUE` for every axis, where PATH is any key
`--set` accepts (`train.optimizer.lr`, `train.optimizer`, `data.samples`, a `let`), and the
special path `spec`, whose values are spec files (to compare networks the override language
cannot switch between). Values are kept as the text that is passed to `--set`, so a trial is
exactly what `dnnspec run SPEC --set ...` would run.

Sampling is deterministic: round r of a sweep with seed s draws from `random.Random(f"{s}:{r}")`,
so the same command gives the same trials on any machine.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
# a trial's metric: a key of `dnnspec run --json` (final weights) or of an epoch's log row
METRICS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "train_accuracy", "train_loss",
           "accuracy", "loss")
SPEC_AXIS = "spec"


class SweepError(UserError):
    """A mistake in a sweep's definition (an axis, a sweep file, a sweep folder): exit code 2."""

    exit_code = 2


# ---------------------------------------------------------------- values
def split_top(text: str, sep: str = ",") -> list[str]:
    """Split at `sep` outside parentheses, brackets and quotes: `sgd(lr=0.1), adam(lr=1e-3)` is
    two values."""
    out, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == sep and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    out.append(text[start:].strip())
    return out


def fmt_number(v: float) -> str:
    """A sampled float as an override value: 4 significant digits (`0.003162`, `1.5e-05`)."""
    return f"{v:.4g}"


def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise SweepError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise SweepError(f"{what}: {text!r} is not a finite number")
    return v


# ---------------------------------------------------------------- axes
@dataclass(frozen=True)
class Axis:
    """One dimension of a sweep: a grid of values, or a distribution to sample from."""

    path: str
    kind: str  # "grid" | "sample"
    values: tuple[str, ...] = ()  # grid values, or choice() options
    dist: str | None = None  # sample: loguniform | uniform | int | choice
    low: float | None = None
    high: float | None = None

    def describe(self) -> str:
        if self.kind == "grid":
            return f"{self.path}={','.join(self.values)}"
        if self.dist == "choice":
            return f"{self.path}=choice({', '.join(self.values)})"
        lo, hi = (int(self.low), int(self.high)) if self.dist == "int" else (self.low, self.high)
        return f"{self.path}={self.dist}({lo:g}, {hi:g})"

    def to_json(self) -> dict:
        d = {"path": self.path, "kind": self.kind}
        if self.kind == "grid" or self.dist == "choice":
            d["values"] = list(self.values)
        if self.kind == "sample":
            d["dist"] = self.dist
            if self.dist != "choice":
                d["low"], d["high"] = self.low, self.high
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Axis":
        return cls(d["path"], d["kind"], tuple(d.get("values", ())), d.get("dist"), d.get("low"), d.get("high"))

    def draw(self, rng: random.Random) -> str:
        if self.dist == "choice":
            return self.values[rng.randrange(len(self.values))]
        if self.dist == "int":
            return str(rng.randint(int(self.low), int(self.high)))
        if self.dist == "loguniform":
            return fmt_number(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return fmt_number(rng.uniform(self.low, self.high))

    def narrowed(self, best: str, shrink: float) -> "Axis":
        """The axis of the next coarse-to-fine round, around the best trial's value `best`: a
        grid or a choice is fixed at it; a range keeps 1/`shrink` of its width (in log space for
        loguniform), centred on it and clipped to the old range."""
        if self.kind == "grid":
            return Axis(self.path, "grid", (best,))
        if self.dist == "choice":
            return Axis(self.path, "sample", (best,), "choice")
        c = float(best)
        if self.dist == "loguniform":
            f = (self.high / self.low) ** (1 / (2 * shrink))
            lo, hi = max(self.low, c / f), min(self.high, c * f)
        else:
            half = (self.high - self.low) / (2 * shrink)
            lo, hi = max(self.low, c - half), min(self.high, c + half)
            if self.dist == "int":
                lo, hi = math.floor(lo), math.ceil(hi)
        if lo >= hi:  # the best value sat on the clipped edge of a narrow range
            lo, hi = min(lo, c), max(hi, c)
        return Axis(self.path, "sample", (), self.dist, float(lo), float(hi))


def _key(text: str, flag: str) -> tuple[str, str]:
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key or not rest.strip():
        raise SweepError(f"{flag} {text!r}: expected PATH=VALUES, e.g. {flag} "
                         + ("train.optimizer.lr=0.1,0.01,0.001" if flag == "--grid"
                            else "train.optimizer.lr=loguniform(1e-4,1e-1)"))
    if not re.fullmatch(r"[A-Za-z_][\w.]*", key):
        raise SweepError(f"{flag} {text!r}: {key!r} is not a parameter path (train.optimizer.lr, data.samples, "
                         "a `let` name, or spec)")
    return key, rest.strip()


def parse_grid(text: str) -> Axis:
    """`PATH=a,b,c` (commas inside parentheses belong to a value: `train.optimizer=sgd(lr=0.1),adam`)."""
    key, rest = _key(text, "--grid")
    values = tuple(split_top(rest))
    if any(not v for v in values):
        raise SweepError(f"--grid {text!r}: an empty value (two commas in a row, or a trailing comma?)")
    if len(set(values)) != len(values):
        raise SweepError(f"--grid {text!r}: a value is listed twice")
    return Axis(key, "grid", values)


def parse_sample(text: str) -> Axis:
    """`PATH=loguniform(lo,hi)`, `uniform(lo,hi)`, `int(lo,hi)` (both ends included) or `choice(a,b,c)`."""
    key, rest = _key(text, "--sample")
    m = re.fullmatch(r"(\w+)\s*\((.*)\)", rest, re.S)
    if m is None or m.group(1) not in DISTRIBUTIONS:
        raise SweepError(f"--sample {text!r}: expected one of loguniform(lo,hi), uniform(lo,hi), int(lo,hi), "
                         "choice(a,b,...)")
    dist, args = m.group(1), split_top(m.group(2))
    what = f"--sample {text!r}"
    if dist == "choice":
        if not all(args):
            raise SweepError(f"{what}: choice() needs values, e.g. choice(32,64,128)")
        if key == SPEC_AXIS:
            raise SweepError(f"{what}: the spec is chosen by --grid spec=a.dnn,b.dnn")
        return Axis(key, "sample", tuple(args), "choice")
    if key == SPEC_AXIS:
        raise SweepError(f"{what}: the spec is chosen by --grid spec=a.dnn,b.dnn")
    if len(args) != 2:
        raise SweepError(f"{what}: {dist}() takes two numbers, low and high")
    lo, hi = (_number(a, what) for a in args)
    if dist == "int" and (lo != int(lo) or hi != int(hi)):
        raise SweepError(f"{what}: int() takes whole numbers")
    if not lo < hi if dist != "int" else not lo <= hi:
        raise SweepError(f"{what}: low must be below high")
    if dist == "loguniform" and lo <= 0:
        raise SweepError(f"{what}: loguniform() needs 0 < low")
    return Axis(key, "sample", (), dist, lo, hi)


# ---------------------------------------------------------------- the sweep
@dataclass
class SweepDef:
    """Everything that determines a sweep's trials (not how or where they run)."""

    spec: str | None = None
    base: list[str] = field(default_factory=list)  # --set overrides of every trial
    axes: list[Axis] = field(default_factory=list)
    trials: int | None = None  # samples per grid point
    seed: int = 0
    metric: str = "val_accuracy"
    mode: str | None = None
    refine: int = 0
    shrink: float = 4.0

    def finish(self) -> "SweepDef":
        """Fill defaults and check the whole definition."""
        paths = [a.path for a in self.axes]
        twice = sorted({p for p in paths if paths.count(p) > 1})
        if twice:
            raise SweepError(f"{', '.join(twice)} is swept twice; give each parameter one --grid or --sample")
        if self.metric not in METRICS:
            raise SweepError(f"unknown metric {self.metric!r}; one of {', '.join(METRICS)}")
        if self.mode is None:
            self.mode = "max" if "accuracy" in self.metric else "min"
        if self.mode not in ("max", "min"):
            raise SweepError(f"mode must be max or min, not {self.mode!r}")
        sampled = any(a.kind == "sample" for a in self.axes)
        if self.trials is None:
            self.trials = 8 if sampled else 1
        if self.trials > 1 and not sampled:
            raise SweepError("--trials N draws N samples per grid point, but nothing is sampled (--sample); "
                             "to repeat a configuration with other seeds, sweep the seed: --grid train.seed=1,2,3")
        if self.spec is None and SPEC_AXIS not in paths:
            raise SweepError("no spec: give SPEC, `spec` in the sweep file, or --grid spec=a.dnn,b.dnn")
        if not self.axes:
            raise SweepError("nothing to sweep: give --grid PATH=a,b,... or --sample PATH=DIST(...)")
        if self.refine and not sampled and all(len(a.values) == 1 for a in self.axes):
            raise SweepError("--refine narrows sampled ranges around the best trial; nothing here is sampled")
        return self

    def to_json(self) -> dict:
        return {"spec": self.spec, "set": list(self.base), "axes": [a.to_json() for a in self.axes],
                "trials": self.trials, "seed": self.seed, "metric": self.metric, "mode": self.mode,
                "refine": self.refine, "shrink": self.shrink}

    @classmethod
    def from_json(cls, d: dict) -> "SweepDef":
        return cls(d["spec"], list(d["set"]), [Axis.from_json(a) for a in d["axes"]], d["trials"], d["seed"],
                   d["metric"], d["mode"], d["refine"], d.get("shrink", 4.0))

    def grid_size(self) -> int:
        return math.prod(len(a.values) for a in self.axes if a.kind == "grid")


@dataclass
class Trial:
    index: int  # 1-based, across rounds
    round: int
    spec: str
    values: dict[str, str]  # path -> override text, in axis order (the `spec` axis included)

    @property
    def name(self) -> str:
        return f"trial-{self.index:03d}"

    def overrides(self, base: list[str]) -> list[str]:
        return [*base, *(f"{p}={v}" for p, v in self.values.items() if p != SPEC_AXIS)]

    def describe(self) -> str:
        return " ".join(f"{p}={v}" for p, v in self.values.items())


def plan_round(d: SweepDef, axes: list[Axis], round_: int, start: int) -> list[Trial]:
    """The trials of one round: every grid point (in order) times `d.trials` samples."""
    rng = random.Random(f"{d.seed}:{round_}")
    grid = [a for a in axes if a.kind == "grid"]
    out = []
    for point in itertools.product(*(a.values for a in grid)):
        fixed = dict(zip((a.path for a in grid), point))
        for _ in range(d.trials):
            values = {a.path: fixed[a.path] if a.kind == "grid" else a.draw(rng) for a in axes}
            spec = values.get(SPEC_AXIS, d.spec)
            out.append(Trial(start + len(out), round_, spec, values))
    return out


# ---------------------------------------------------------------- sweep files
def read_sweep_file(path) -> SweepDef:
    """A sweep file: JSON (`.json`) or the line format below (anything else). Paths in it (specs)
    are relative to the working directory, like the paths in a spec.

        # comment
        spec specs/mnist_relu_he.dnn specs/mnist_bn_elu.dnn   # two or more: a `spec` grid axis
        set train.epochs=10                                   # repeatable, for every trial
        grid train.optimizer=sgd(lr=0.01), adam(lr=0.001)     # repeatable
        sample train.optimizer.lr=loguniform(1e-4, 1e-1)      # repeatable
        trials 8
        seed 0
        metric val_accuracy
        mode max
        refine 1

    JSON: {"spec": "a.dnn" or [...], "set": [...], "grid": {"PATH": [values]} or ["PATH=a,b"],
    "sample": {"PATH": "loguniform(1e-4,1e-1)"} or ["PATH=..."], "trials": 8, "seed": 0, ...}
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SweepError(f"{path}: no such sweep file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepError(f"{path}: cannot read the sweep file: {e}") from None
    if path.suffix == ".json":
        return _from_json(path, text)
    return _from_lines(path, text)


def _from_lines(path: Path, text: str) -> SweepDef:
    d = SweepDef()
    d.trials = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        where = f"{path}:{n}"
        try:
            if word == "spec":
                specs = rest.split()
                if not specs:
                    raise SweepError("`spec` needs a file name")
                if len(specs) == 1:
                    d.spec = specs[0]
                else:
                    d.axes.append(Axis(SPEC_AXIS, "grid", tuple(specs)))
            elif word == "set":
                _key(rest, "--set")
                d.base.append(rest)
            elif word == "grid":
                d.axes.append(parse_grid(rest))
            elif word == "sample":
                d.axes.append(parse_sample(rest))
            elif word in ("trials", "seed", "refine"):
                setattr(d, word, _int(rest, word))
            elif word == "metric":
                d.metric = rest
            elif word == "mode":
                d.mode = rest
            else:
                raise SweepError(f"unknown line {word!r}; known: spec, set, grid, sample, trials, seed, metric, mode, "
                                 "refine")
        except SweepError as e:
            raise SweepError(f"{where}: {e}") from None
    return d


def _strip_comment(line: str) -> str:
    """`#` starts a comment outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def _int(text: str, what: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise SweepError(f"`{what}` takes a whole number, not {text!r}") from None
    if v < (1 if what == "trials" else 0) and what != "seed":
        raise SweepError(f"`{what}` must be at least {1 if what == 'trials' else 0}")
    return v


def _text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _from_json(path: Path, text: str) -> SweepDef:
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise SweepError(f"{path}: not JSON: {e}") from None
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: expected a JSON object")
    known = {"spec", "set", "grid", "sample", "trials", "seed", "metric", "mode", "refine"}
    extra = sorted(set(raw) - known)
    if extra:
        raise SweepError(f"{path}: unknown key {extra[0]!r}; known: {', '.join(sorted(known))}")
    d = SweepDef()
    d.trials = None
    try:
        spec = raw.get("spec")
        if isinstance(spec, list):
            if len(spec) == 1:
                d.spec = str(spec[0])
            elif spec:
                d.axes.append(Axis(SPEC_AXIS, "grid", tuple(map(str, spec))))
        elif spec is not None:
            d.spec = str(spec)
        d.base = [str(s) for s in raw.get("set", [])]
        for kind, parse in (("grid", parse_grid), ("sample", parse_sample)):
            items = raw.get(kind, [])
            if isinstance(items, dict):
                for p, v in items.items():
                    if kind == "grid" and isinstance(v, list):
                        d.axes.append(Axis(p, "grid", tuple(_text(x) for x in v)) if v else parse_grid(f"{p}="))
                    else:
                        d.axes.append(parse(f"{p}={_text(v)}"))
            else:
                d.axes += [parse(str(s)) for s in items]
        for k in ("trials", "seed", "refine"):
            if k in raw:
                setattr(d, k, _int(str(raw[k]), k))
        d.metric = raw.get("metric", d.metric)
        d.mode = raw.get("mode", d.mode)
    except SweepError as e:
        raise SweepError(f"{path}: {e}") from None
    return d
