"""The speed benchmark of issue 6, in one run: dnnspec vs a hand-written NumPy loop vs PyTorch CPU.

    python benchmarks/run.py            # full: 60000 samples, 3 timed epochs (~20 min on 2 cores)
    python benchmarks/run.py --quick    # 10000 samples, 1 timed epoch (~4 min)
    python benchmarks/run.py --only threads   # the thread-scaling section alone, rewritten in place

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
from benchmarks.common import ROOT, Stats, run_in_subprocess  # noqa: E402
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


def thread_counts(cores: int) -> list[int]:
    """1, 2, 4, ... and the machine's usable cores."""
    return sorted({1, cores} | {2**i for i in range(1, cores.bit_length()) if 2**i <= cores})


def thread_table(args) -> tuple[list[str], list[dict]]:
    """Seconds per epoch at 1, 2, ... cores threads: dnnspec forced (`--threads N`: N threads for the
    GEMMs' blocks and the element-wise work, a one-thread BLAS; N BLAS threads alone, the old
    default; N BLAS threads and N element-wise), the NumPy loop and torch, each in a fresh process with its threads limited
    after import; then dnnspec's automatic choice next to the best configuration measured.

    Every measurement of a workload is taken `args.rounds` times, in alternating order, and the
    timed epochs of its rounds are pooled: load that drifts during the run hits all alike."""
    cores = ref_torch.default_threads()
    counts = thread_counts(cores)
    env = {"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None}  # the kernel the CPU asks for
    epochs = max(args.epochs, 3)
    kw = dict(epochs=epochs, n_samples=args.samples, warmup=1)
    lines = ["| workload | threads | dnnspec `--threads N` | dnnspec N BLAS + 1 | dnnspec N BLAS + N | NumPy by hand | "
             "PyTorch fused Adam | dnnspec best/PyTorch | dnnspec 1→N | NumPy 1→N | PyTorch 1→N |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    auto_lines = ["| workload | automatic choice | its s/epoch | best measured | auto/best | choice took |",
                  "|---|---|---|---|---|---|"]
    records = []
    for variant, batch in WORKLOADS:
        jobs: dict[tuple[str, int], tuple[str, dict]] = {}
        base = dict(variant=variant, batch=batch, **kw)
        for n in counts:
            jobs[("dnnspec", n)] = ("benchmarks.bench_dnnspec:run", dict(base, threads=n))
            if n > 1:
                jobs[("dnnspec_Nx1", n)] = ("benchmarks.bench_dnnspec:run", dict(base, threads=f"{n}x1"))
                jobs[("dnnspec_NxN", n)] = ("benchmarks.bench_dnnspec:run", dict(base, threads=f"{n}x{n}"))
            jobs[("numpy", n)] = ("benchmarks.ref_numpy:run", dict(base, threads=n))
            if ref_torch.available():
                jobs[("torch", n)] = ("benchmarks.ref_torch:run", dict(base, adam="fused", threads=n))
        jobs[("auto", 0)] = ("benchmarks.bench_dnnspec:run", dict(base))
        got: dict[tuple[str, int], list[dict]] = {k: [] for k in jobs}
        for r in range(args.rounds):
            for key in (list(jobs) if r % 2 == 0 else list(jobs)[::-1]):
                target, kwargs = jobs[key]
                got[key].append(run_in_subprocess(target, kwargs, env=env))
        res = {k: dict(v[0], epoch_seconds=[t for x in v for t in x["epoch_seconds"]],
                       stats=Stats.of([t for x in v for t in x["epoch_seconds"]]).as_dict(),
                       others_cpu=max((x.get("others_cpu") or 0.0) for x in v)) for k, v in got.items()}
        med = {k: median(v) for k, v in res.items()}
        dn_all = {}
        for n in counts:
            dn_all[f"1x{n}"] = med[("dnnspec", n)]
            if n > 1:
                dn_all[f"{n}x1"] = med[("dnnspec_Nx1", n)]
                dn_all[f"{n}x{n}"] = med[("dnnspec_NxN", n)]
        for n in counts:
            best_dn = min(v for k, v in dn_all.items() if max(map(int, k.split("x"))) <= n)
            torch_n = med.get(("torch", n))
            vs_torch = best_dn / torch_n if torch_n else float("nan")

            def cell(key: str) -> str:
                return fmt_stats(res[(key, n)]) if (key, n) in res else "(same)"

            def speedup(key: str, now: float | None = None) -> str:
                one = med.get((key, 1))
                now = med.get((key, n)) if now is None else now
                return f"{one / now:.2f}×" if one and now else "–"

            lines.append(f"| {variant}, batch {batch} | {n} | {cell('dnnspec')} | {cell('dnnspec_Nx1')} | "
                         f"{cell('dnnspec_NxN')} | {cell('numpy')} | "
                         + (f"{cell('torch')} | " if ("torch", n) in res else "n/a | ")
                         + f"**{vs_torch:.2f}×** | {speedup('dnnspec', best_dn)} | {speedup('numpy')} | "
                         f"{speedup('torch')} |")
            records.append({"table": "threads", "variant": variant, "batch": batch, "threads": n,
                            **{k: v["stats"] for (k, m), v in res.items() if m == n},
                            "dnnspec_best_over_torch": vs_torch,
                            "others_cpu": {k: v.get("others_cpu") for (k, m), v in res.items() if m == n}})
        auto = res[("auto", 0)]
        chosen = sorted({x["threads"] for x in got[("auto", 0)]})
        best_name = min(dn_all, key=dn_all.get)
        ratio = med[("auto", 0)] / dn_all[best_name]
        took = max(x["choice_seconds"] for x in got[("auto", 0)])
        auto_lines.append(f"| {variant}, batch {batch} | {', '.join(chosen)} | {fmt_stats(auto)} | "
                          f"{dn_all[best_name]:.2f} ({best_name}) | **{ratio:.2f}×** | ≤ {took:.2f} s |")
        records.append({"table": "threads-auto", "variant": variant, "batch": batch, "auto": chosen,
                        "auto_stats": auto["stats"], "choices": [x["thread_choice"] for x in got[("auto", 0)]],
                        "best": best_name, "best_seconds": dn_all[best_name], "auto_over_best": ratio,
                        "others_cpu": auto.get("others_cpu")})
    out = ["## Thread scaling", "",
           f"Seconds per epoch, median (min–max) of {epochs} timed epochs on {args.samples} samples in each of "
           f"{args.rounds} fresh processes (rounds in alternating order, epochs pooled), the threads limited "
           "after import, OpenBLAS's own kernel (OPENBLAS_CORETYPE unset). dnnspec `--threads N`: N pool threads "
           "for the element-wise work and for the GEMMs, each GEMM cut into one block per thread, a one-thread BLAS "
           "call each (the same bits for every N); \"N BLAS + 1\": the GEMMs on the BLAS's N threads, element-wise "
           "work on one thread (the old default); \"N BLAS + N\": both. dnnspec best/PyTorch: "
           "the fastest dnnspec configuration with at most N threads over PyTorch with N. 1→N: speed-up over the "
           "same implementation at 1 thread.", "", *lines, "",
           "The automatic choice (no `--threads`: configurations timed on a copy of the model when the fit starts, "
           "as for a fit long enough to pay for the trials; BLASxelement-wise threads; one choice per process) "
           "against the best configuration measured above:", "", *auto_lines, ""]
    return out, records


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
    ap.add_argument("--only", choices=["threads"], help="measure one section and rewrite it in place")
    ap.add_argument("--rounds", type=int, default=2, help="fresh processes per thread-scaling measurement")
    ap.add_argument("--priority", action="store_true",
                    help="run each measurement at the top CPU priority (own autogroup, nice -20; needs root): "
                         "on a machine other work keeps busy, the nearest thing to a quiet one")
    args = ap.parse_args(argv)
    if args.priority:
        os.environ["BENCH_PRIORITY"] = "1"  # inherited by every run_in_subprocess
    args.samples, args.epochs = (10000, 1) if args.quick else (60000, 3)
    start = time.perf_counter()
    if args.only == "threads":
        return only_threads(args, start)
    out: list[str] = []
    info = machine_info(gemm=False)
    med, lo, hi = run_in_subprocess("benchmarks.machine:gemm_gflops", {})  # at the children's priority
    info["gemm"] = {"n": 2048, "dtype": "float32", "gflops_median": med, "gflops_min": lo, "gflops_max": hi}
    auto_gemm = run_in_subprocess("benchmarks.machine:gemm_gflops", {}, env={"OPENBLAS_CORETYPE": None})
    flags = (" --quick" if args.quick else "") + (" --priority" if args.priority else "")
    out += ["# Performance", "", f"Measured by `python benchmarks/run.py{flags}` "
            f"on {time.strftime('%Y-%m-%d')}" + (" (each measurement at the top CPU priority: the machine was shared)"
                                                 if args.priority else "") + ".", "", f"Machine: {machine_line(info)}", "",
            f"float32 GEMM 2048³: {info['gemm']['gflops_median']:.0f} GFLOP/s with the environment's OpenBLAS "
            f"kernel, {auto_gemm[0]:.0f} GFLOP/s with OPENBLAS_CORETYPE unset.", ""]
    out += [f"Workload: 784-512x4-10, He init, softmax-CE, Adam(1e-3), float32, {args.samples} samples "
            f"reshuffled each epoch; seconds per epoch, median (min–max) of {args.epochs} timed epochs after "
            "one warm-up, each implementation in a fresh process; dnnspec with its automatic thread choice, the "
            "references with all cores. Ratios: dnnspec / reference (lower is better). GFLOP/s counts 6 FLOPs per "
            "weight per sample.", ""]
    records = []
    for env_name, env in settings():
        rows, recs = train_table(args, env_name, env)
        records += recs
        out += [f"## Training, {env_name}", "",
                "| workload | dnnspec | NumPy by hand | PyTorch fused Adam | PyTorch default Adam | dnnspec/NumPy | "
                "dnnspec/PyTorch | dnnspec GFLOP/s |", "|---|---|---|---|---|---|---|---|", *rows, ""]
    rows, recs = thread_table(args)
    out += rows
    records += recs
    peak = auto_gemm[0]
    b1000 = [r for r in records if r["batch"] == 1000 and r.get("env", "").startswith("OpenBLAS auto")]
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


def only_threads(args, start: float) -> None:
    """Rewrite the thread-scaling section of an existing report (and add its records)."""
    info = machine_info(gemm=False)
    rows, recs = thread_table(args)
    rows += [f"Measured by `python benchmarks/run.py --only threads{' --quick' if args.quick else ''}"
             f"{' --priority' if args.priority else ''}` on "
             f"{time.strftime('%Y-%m-%d')} in {time.perf_counter() - start:.0f} s; machine: {machine_line(info)}.", ""]
    path = Path(args.out)
    old = path.read_text() if path.is_file() else ""
    head, marker = "## Thread scaling", "\n## "
    if head in old:
        a = old.index(head)
        b = old.find(marker, a + len(head))
        text = old[:a] + "\n".join(rows) + (old[b + 1:] if b >= 0 else "")
    elif "\n## Profile" in old:
        b = old.index("\n## Profile")
        text = old[:b + 1] + "\n".join(rows) + old[b:]
    else:
        text = old + "\n" + "\n".join(rows)
    path.write_text(text)
    print("\n".join(rows))
    js = path.with_suffix(".json")
    kept = [r for r in json.loads(js.read_text()) if not str(r.get("table", "")).startswith("threads")] if js.is_file() else []
    js.write_text(json.dumps(kept + recs, indent=1))


if __name__ == "__main__":
    main()
