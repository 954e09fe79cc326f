"""Fuzz the spec checker for a time budget: mutate the shipped specs and the docs' examples
(tests/spec_mutators.py: token deletions, duplications, swaps, random unicode, huge numbers,
deep nesting, hostile snippets) and check each one. A crasher is a spec on which
`dnnspec.check.check_text` raises anything but SpecError/UserError, runs past the time bound, or
whose `dnnspec fmt` output does not parse back to the same AST.

    python benchmarks/fuzz_specs.py --seconds 300 --seed 1 [--out crashers/]

Prints one line per distinct crasher (exception type, message, where it was raised) with the
spec's size, then the counts; with --out, writes each crasher's spec to a file there. Exit
status 1 if it found any. The default test run holds the same property for a few seconds
(tests/test_hostile_specs.py); docs/reliability.md records the counts of a long run.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import spec_mutators as sm  # noqa: E402


def where(exc: BaseException) -> str:
    """The innermost dnnspec frame of a traceback (file:line function), else the innermost."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/dnnspec/" in f.filename] or frames
    f = ours[-1] if ours else None
    return f"{Path(f.filename).name}:{f.lineno} {f.name}" if f else "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="time budget (default 60)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--bound", type=float, default=10.0, help="seconds one spec may take (default 10)")
    ap.add_argument("--steps", type=int, default=4, help="at most this many mutations per spec (default 4)")
    ap.add_argument("--out", type=Path, help="write each crasher's spec (and the 5 slowest) into this folder")
    args = ap.parse_args(argv)

    r = random.Random(args.seed)
    outcomes: Counter[str] = Counter()
    crashers: dict[str, tuple[str, str]] = {}  # signature -> (message, spec)
    slowest: list[tuple[float, str]] = []  # the 5 slowest (seconds, spec)
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < args.seconds:
        text = sm.random_spec(r, args.steps)
        n += 1
        try:
            outcome, seconds = sm.check_outcome(text, args.bound)
        except Exception as e:  # noqa: BLE001 - a crasher, whatever it is
            outcomes["crash"] += 1
            signature = f"{type(e).__name__} at {where(e)}"
            if signature not in crashers:
                crashers[signature] = (str(e)[:200], text)
                print(f"CRASH {signature}: {str(e)[:200]!r} ({len(text)} chars)", flush=True)
                if args.out:
                    args.out.mkdir(parents=True, exist_ok=True)
                    (args.out / f"crash{len(crashers):03d}.dnn").write_text(text, encoding="utf-8",
                                                                           errors="surrogatepass")
            continue
        outcomes[outcome] += 1
        slowest = sorted([*slowest, (seconds, text)], key=lambda x: -x[0])[:5]
    elapsed = time.monotonic() - start
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for i, (seconds, text) in enumerate(slowest, 1):
            (args.out / f"slow{i}.dnn").write_text(text, encoding="utf-8", errors="surrogatepass")
    print(f"{n} specs in {elapsed:.0f} s (seed {args.seed}): " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
          + f"; {len(crashers)} distinct crashers; slowest " + ", ".join(f"{t:.2f} s" for t, _ in slowest))
    return 1 if crashers else 0


if __name__ == "__main__":
    sys.exit(main())
