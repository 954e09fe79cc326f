"""The PyTorch CPU reference of the same workload as ref_numpy (issue 6).

784-512-512-512-512-10 nn.Sequential, kaiming_normal_ (He, fan_in, untruncated) weights and
zero biases, F.cross_entropy (mean), Adam(lr=1e-3) fused (`fused=True`) or default (on CPU:
the single-tensor for-loop), float32, reshuffled each epoch, n // batch full batches.
bn_elu_dropout: Linear -> BatchNorm1d(eps=1e-3, momentum=0.01, i.e. Keras' 0.99) -> ELU ->
Dropout(0.3) per hidden layer. torch is imported lazily: this module imports without it, and
`available()` says whether it can run. torch is a benchmark reference only, never a dnnspec
dependency (the `torch` extra pins torch==2.13.0).
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import time
from collections import defaultdict

from .common import Stats, synthetic_mnist, time_epochs

SIZES = (784, 512, 512, 512, 512, 10)
VARIANTS = ("base", "bn_elu_dropout")
ADAMS = ("fused", "default")


def available() -> bool:
    """True when torch can be imported (without importing it)."""
    return importlib.util.find_spec("torch") is not None


def default_threads() -> int:
    """The cores this process may use: what both references and dnnspec should run with."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def torch_info() -> dict:
    """torch version, intra-/inter-op threads, and the BLAS/oneDNN it was built with."""
    import torch
    parallel = torch.__config__.parallel_info()
    blas = next((ln.strip() for ln in parallel.splitlines() if "Math Kernel" in ln or "BLAS" in ln), None)
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "blas": blas,
            "mkldnn": torch.backends.mkldnn.is_available()}


def gemm_gflops(n: int = 2048, repeats: int = 5, threads: int | None = None) -> tuple[float, float, float]:
    """(median, min, max) GFLOP/s of torch's float32 n×n×n matmul (MKL in the CPU wheels)."""
    import torch
    torch.set_num_threads(threads or default_threads())
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        rates.append(2.0 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates), min(rates), max(rates)


def build(variant: str, sizes=SIZES, p_drop: float = 0.3):
    """The network as nn.Sequential, He-initialised (call after seeding torch)."""
    from torch import nn
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, received {variant!r}")
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        dense = nn.Linear(n_in, n_out)
        nn.init.kaiming_normal_(dense.weight, nonlinearity="relu")
        nn.init.zeros_(dense.bias)
        layers.append(dense)
        if i == len(sizes) - 2:
            break
        if variant == "base":
            layers.append(nn.ReLU())
        else:
            layers += [nn.BatchNorm1d(n_out, eps=1e-3, momentum=0.01), nn.ELU(), nn.Dropout(p_drop)]
    return nn.Sequential(*layers)


def run(variant: str = "base", batch: int = 100, epochs: int = 3, n_samples: int = 60000,
        warmup: int = 1, profile: bool = False, seed: int = 0, adam: str = "fused",
        threads: int | None = None) -> dict:
    """Train on synthetic MNIST-shaped data; per-epoch seconds, final loss, optional profile.

    profile=True times the batch gather, forward (with the loss), backward and the optimizer
    step separately (torch on CPU is synchronous, so perf_counter around each is exact).
    """
    import torch
    import torch.nn.functional as F
    if adam not in ADAMS:
        raise ValueError(f"adam must be one of {ADAMS}, received {adam!r}")
    threads = threads or default_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    X_np, y_np = synthetic_mnist(n_samples, seed=seed)
    X, y = torch.from_numpy(X_np), torch.from_numpy(y_np)  # shared memory, no copy
    model = build(variant)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if adam == "fused" else {}))
    xb, yb = torch.empty(batch, X.shape[1]), torch.empty(batch, dtype=torch.int64)
    gen = torch.Generator().manual_seed(seed)
    steps = n_samples // batch
    acc: dict[str, float] = defaultdict(float)
    clock = time.perf_counter

    def epoch() -> float:
        order, total = torch.randperm(n_samples, generator=gen), torch.zeros(())
        for s in range(steps):
            t0 = clock()
            idx = order[s * batch:(s + 1) * batch]
            torch.index_select(X, 0, idx, out=xb)
            torch.index_select(y, 0, idx, out=yb)
            t1 = clock()
            loss = F.cross_entropy(model(xb), yb)
            t2 = clock()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t3 = clock()
            opt.step()
            t4 = clock()
            total += loss.detach()
            if profile:
                acc["gather"] += t1 - t0; acc["forward"] += t2 - t1
                acc["backward"] += t3 - t2; acc["optimizer"] += t4 - t3
        return float(total) / steps

    losses = []
    for _ in range(warmup):
        losses.append(epoch())
    acc.clear()
    times = time_epochs(lambda: losses.append(epoch()), epochs, warmup=0)
    result = {"impl": f"torch-{adam}", "variant": variant, "batch": batch, "n_samples": n_samples,
              "epochs": epochs, "epoch_seconds": times, "stats": Stats.of(times).as_dict(),
              "final_loss": losses[-1], "first_loss": losses[0], "steps_per_epoch": steps,
              "torch": torch_info()}
    if profile:
        total = sum(times)
        phases = dict(acc, other=total - sum(acc.values()))
        result["profile"] = {"fraction": {k: v / total for k, v in phases.items()},
                             "ms_per_step": {k: 1e3 * v / (steps * epochs) for k, v in phases.items()}}
    return result


def main(argv=None):
    import json

    from .common import workload_args

    a = workload_args(__doc__.splitlines()[0], VARIANTS, argv,
                      extra=lambda ap: ap.add_argument("--adam", choices=ADAMS, default="fused"))
    if not available():
        raise SystemExit("torch is not installed (pip install torch==2.13.0)")
    print(json.dumps(run(a.variant, a.batch, a.epochs, a.samples, profile=a.profile, adam=a.adam), indent=1))


if __name__ == "__main__":
    main()
