"""The speed benchmark of issue 6, in one run: dnnspec vs a hand-written NumPy loop vs PyTorch CPU.

    python benchmarks/run.py            # full: 60000 samples, 3 timed epochs (< 10 min)
    python benchmarks/run.py --quick    # 10000 samples, 1 timed epoch (< 2 min)

Every training measurement runs in a fresh process, once with the environment's
OPENBLAS_CORETYPE (Haswell here: AVX2 kernels) and once with it unset (OpenBLAS picks AVX-512),
because OpenBLAS reads it at load time. Ratios compare numbers measured in the same run.
Writes the tables to docs/performance.md (or --out) and prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import ref_torch  # noqa: E402
from benchmarks.common import ROOT, run_in_subprocess  # noqa: E402
from benchmarks.machine import machine_info, machine_line  # noqa: E402

WORKLOADS = [("base", 100), ("bn_elu_dropout", 100), ("base", 1000)]
WEIGHTS = 784 * 512 + 3 * 512 * 512 + 512 * 10  # kernels of 784-512x4-10


def settings() -> list[tuple[str, dict]]:
    current = os.environ.get("OPENBLAS_CORETYPE")
    return [(f"OPENBLAS_CORETYPE={current or 'Haswell'}", {"OPENBLAS_CORETYPE": current or "Haswell"}),
            ("OpenBLAS auto (unset)", {"OPENBLAS_CORETYPE": None})]


def median(result: dict) -> float:
    return result["stats"]["median"]


def fmt_stats(r: dict) -> str:
    s = r["stats"]
    return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


def train_table(args, env_name, env) -> tuple[list[str], list[dict]]:
    rows, records = [], []
    kw = dict(epochs=args.epochs, n_samples=args.samples, warmup=1)
    for variant, batch in WORKLOADS:
        r = {"dnnspec": run_in_subprocess("benchmarks.bench_dnnspec:run", dict(variant=variant, batch=batch, **kw), env=env),
             "numpy": run_in_subprocess("benchmarks.ref_numpy:run", dict(variant=variant, batch=batch, **kw), env=env)}
        if ref_torch.available():
            r["torch"] = run_in_subprocess("benchmarks.ref_torch:run",
                                           dict(variant=variant, batch=batch, adam="fused", **kw), env=env)
            if not args.quick:
                r["torch_default"] = run_in_subprocess("benchmarks.ref_torch:run",
                                                       dict(variant=variant, batch=batch, adam="default", **kw), env=env)
        d = median(r["dnnspec"])
        vs_np = d / median(r["numpy"])
        vs_torch = d / median(r["torch"]) if "torch" in r else float("nan")
        flops = 6 * WEIGHTS * args.samples / d / 1e9
        rows.append(f"| {variant}, batch {batch} | {fmt_stats(r['dnnspec'])} | {fmt_stats(r['numpy'])} | "
                    + (f"{fmt_stats(r['torch'])} | " if "torch" in r else "n/a | ")
                    + (f"{fmt_stats(r['torch_default'])} | " if "torch_default" in r else "– | ")
                    + f"**{vs_np:.2f}×** | **{vs_torch:.2f}×** | {flops:.0f} |")
        records.append({"env": env_name, "variant": variant, "batch": batch, **{k: v["stats"] for k, v in r.items()},
                        "dnnspec_over_numpy": vs_np, "dnnspec_over_torch": vs_torch, "gflops": flops})
    return rows, records


def command_seconds(cmd: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def big_spec(path: Path, layers: int = 1000) -> Path:
    lines = ["model big {", "    input x[64]"] + [f"    dense layer{i}(64, activation=relu)" for i in range(layers)]
    path.write_text("\n".join(lines + ["    dense out(10)", "}", ""]))
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10000 samples, 1 timed epoch")
    ap.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    args = ap.parse_args(argv)
    args.samples, args.epochs = (10000, 1) if args.quick else (60000, 3)
    start = time.perf_counter()
    out: list[str] = []
    info = machine_info()
    auto_gemm = run_in_subprocess("benchmarks.machine:gemm_gflops", {}, env={"OPENBLAS_CORETYPE": None})
    out += ["# Performance", "", f"Measured by `python benchmarks/run.py{' --quick' if args.quick else ''}` "
            f"on {time.strftime('%Y-%m-%d')}.", "", f"Machine: {machine_line(info)}", "",
            f"float32 GEMM 2048³: {info['gemm']['gflops_median']:.0f} GFLOP/s with the environment's OpenBLAS "
            f"kernel, {auto_gemm[0]:.0f} GFLOP/s with OPENBLAS_CORETYPE unset.", ""]
    out += [f"Workload: 784-512x4-10, He init, softmax-CE, Adam(1e-3), float32, {args.samples} samples "
            f"reshuffled each epoch; seconds per epoch, median (min–max) of {args.epochs} timed epochs after "
            "one warm-up, each implementation in a fresh process. Ratios: dnnspec / reference (lower is "
            "better). GFLOP/s counts 6 FLOPs per weight per sample.", ""]
    records = []
    for env_name, env in settings():
        rows, recs = train_table(args, env_name, env)
        records += recs
        out += [f"## Training, {env_name}", "",
                "| workload | dnnspec | NumPy by hand | PyTorch fused Adam | PyTorch default Adam | dnnspec/NumPy | "
                "dnnspec/PyTorch | dnnspec GFLOP/s |", "|---|---|---|---|---|---|---|---|", *rows, ""]
    peak = auto_gemm[0]
    b1000 = [r for r in records if r["batch"] == 1000 and r["env"].startswith("OpenBLAS auto")]
    if b1000:
        out += [f"Batch 1000 under OpenBLAS auto: {b1000[0]['gflops']:.0f} GFLOP/s = "
                f"**{b1000[0]['gflops'] / peak:.0%}** of the GEMM peak measured above.", ""]
    # frozen-layer caching: 5 hidden layers, 3 frozen
    out += ["## Frozen-layer caching", "", "Five hidden layers (ReLU, He), hidden1-3 frozen, batch 100, Adam, seconds "
            "per epoch; without the cache the frozen layers still run forward only (no backward below hidden4):", "",
            "| network | without cache | with cache | speed-up |", "|---|---|---|---|"]
    for widths in ((300, 100, 100, 100, 100), (512,) * 5):
        kw = dict(variant="base", batch=100, epochs=args.epochs, n_samples=args.samples, warmup=1, frozen=3,
                  widths=widths)
        cached = run_in_subprocess("benchmarks.bench_dnnspec:run", dict(cache=True, **kw))
        plain = run_in_subprocess("benchmarks.bench_dnnspec:run", dict(cache=False, **kw))
        name = "784-" + "-".join(map(str, widths)) + "-10"
        out.append(f"| {name} | {fmt_stats(plain)} | {fmt_stats(cached)} | **{median(plain) / median(cached):.1f}×** "
                   f"(cache built once in {cached['fit_overhead_seconds']:.2f} s) |")
    out.append("")
    ev = run_in_subprocess("benchmarks.bench_dnnspec:eval_throughput", dict(n_samples=args.samples))
    out += ["## Inference", "", f"predict: {ev['predict_samples_per_s']:,.0f} samples/s; training "
            f"{ev['train_samples_per_s']:,.0f} samples/s: inference is **{ev['ratio']:.1f}×** faster.", ""]
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "dnnspec-bench-big.dnn"
    exe = [sys.executable, "-m", "dnnspec"]
    check_s = command_seconds([*exe, "check", str(big_spec(tmp))], 3)
    help_s = command_seconds([*exe, "--help"])
    mem = run_in_subprocess("benchmarks.bench_dnnspec:peak_memory", dict(n_samples=args.samples))
    out += ["## Start-up, checking, memory", "",
            f"- `dnnspec check` of a generated 1000-layer spec: **{check_s:.2f} s** (process start included).",
            f"- `dnnspec --help`: **{help_s:.2f} s** (no h5py, matplotlib or torch imported at start-up).",
            f"- Peak memory of a training run on {args.samples} samples: {mem['peak_mb']:.0f} MB resident, "
            f"over a baseline interpreter with NumPy of {mem['baseline_mb']:.0f} MB: {mem['used_mb']:.0f} MB for "
            f"an estimate of {mem['estimate_mb']:.0f} MB (data + parameters + optimizer state + one batch of "
            f"activations and gradients): **{mem['used_mb'] / mem['estimate_mb']:.2f}×**.", ""]
    out += [f"Benchmark wall time: {time.perf_counter() - start:.0f} s.", ""]
    text = "\n".join(out)
    if Path(args.out).is_file():
        old = Path(args.out).read_text()
        marker = "\n## Profile"
        if marker in old:  # keep the hand-written analysis that follows the measured tables
            text += old[old.index(marker):]
    Path(args.out).write_text(text)
    print(text)
    (Path(args.out).with_suffix(".json")).write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
