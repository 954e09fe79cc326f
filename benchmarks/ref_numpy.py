"""The hand-written NumPy reference loop dnnspec is measured against (issue 6).

784-512-512-512-512-10, He-normal init (torch's kaiming_normal_, untruncated), zero biases,
mean softmax cross-entropy, Adam(lr=1e-3) in torch's form, float32 end to end, reshuffled each
epoch, n // batch full batches per epoch. Variants:
  base            dense -> relu, per hidden layer
  bn_elu_dropout  dense(+bias) -> batchnorm (Keras-style: moving = 0.99 moving + 0.01 stat,
                  biased variance, eps 1e-3) -> elu -> inverted dropout(0.3), per hidden layer
It is what a competent person writes by hand: preallocated buffers, `out=` everywhere, float
masks (multiplying by a bool mask is ~2x slower, np.maximum ~5x), Python-float scalars only (a
NumPy float64 scalar turns float32 work into float64), one Adam pass per operation per
variable, dropout masks from raw random bits (float32 uniforms cost ~3x). No flat parameter
buffer, no fusion beyond NumPy ufuncs: those are what a compiled plan may add on top.
"""

from __future__ import annotations

import math
from collections import defaultdict
from time import perf_counter

import numpy as np

from .common import Stats, synthetic_mnist, time_epochs

SIZES = (784, 512, 512, 512, 512, 10)
VARIANTS = ("base", "bn_elu_dropout")


class Net:
    """Parameters, Adam state and every buffer for one batch size, allocated once."""

    def __init__(self, variant: str, batch: int, seed: int = 0, sizes=SIZES, p_drop: float = 0.3,
                 bn_momentum: float = 0.99, bn_eps: float = 1e-3, lr: float = 1e-3):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, received {variant!r}")
        self.bn, self.B, self.lr = variant == "bn_elu_dropout", batch, lr
        self.rng = np.random.default_rng(seed)
        f32, B, L = np.float32, batch, len(sizes) - 1
        self.W = [self.rng.standard_normal((i, o), dtype=f32) * math.sqrt(2.0 / i)
                  for i, o in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(o, f32) for o in sizes[1:]]
        self.params = self.W + self.b
        hidden = sizes[1:-1]
        if self.bn:
            self.gamma = [np.ones(n, f32) for n in hidden]
            self.beta = [np.zeros(n, f32) for n in hidden]
            self.mov_mean = [np.zeros(n, f32) for n in hidden]
            self.mov_var = [np.ones(n, f32) for n in hidden]
            self.params += self.gamma + self.beta
            self.xc = [np.empty((B, n), f32) for n in hidden]   # x - batch mean
            self.scale = [np.empty(n, f32) for n in hidden]     # gamma / sqrt(var + eps)
            self.inv = [np.empty(n, f32) for n in hidden]       # 1 / sqrt(var + eps)
            self.dact = [np.empty((B, n), f32) for n in hidden]  # elu'(y) = exp(min(y, 0))
            self.drop = [np.empty((B, n), f32) for n in hidden]  # 0 or 1/(1-p)
            self.mu, self.var = np.empty(max(hidden), f32), np.empty(max(hidden), f32)
            self.keep_threshold = int(round(p_drop * 2 ** 32))  # drop where uint32 bits < this
            self.p_drop, self.momentum, self.eps = p_drop, bn_momentum, bn_eps
        else:
            self.mask = [np.empty((B, n), f32) for n in hidden]  # relu'(z) as 0/1 floats
        self.grads = [np.empty_like(p) for p in self.params]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.scratch = np.empty(max(p.size for p in self.params), f32)
        self.t = 0
        self.z = [np.empty((B, n), f32) for n in sizes[1:]]  # pre-activations, then outputs
        self.a = [np.empty((B, n), f32) for n in hidden]     # layer outputs
        self.d = [np.empty((B, n), f32) for n in hidden]     # dL/d(layer output)
        self.tmp = np.empty((B, max(hidden)), f32)
        self.ones = np.ones(B, f32)  # column sums as a GEMV: 2x faster than sum(axis=0)
        self.rowmax, self.rowsum = np.empty((B, 1), f32), np.empty((B, 1), f32)
        self.rows = np.arange(B)
        self.xb, self.yb = np.empty((B, sizes[0]), f32), np.empty(B, np.int64)
        self.L = L
        # profiling swaps these for timed wrappers; the hot path always calls through them
        self.mm, self.adam, self.gather, self.draw = np.matmul, self._adam, self._gather, self._draw

    # ---- forward and backward, layer by layer -------------------------------------------
    def forward(self, x):
        for i in range(self.L - 1):
            z = self.z[i]
            self.mm(x, self.W[i], out=z)
            z += self.b[i]
            x = self.a[i]
            if self.bn:
                self._bn_elu_dropout_forward(i, z, x)
            else:  # relu as a multiply by a float mask, the mask kept for backward
                np.greater(z, 0.0, out=self.mask[i])
                np.multiply(z, self.mask[i], out=x)
        z = self.z[-1]
        self.mm(x, self.W[-1], out=z)
        z += self.b[-1]
        return z

    def _bn_elu_dropout_forward(self, i, z, out):
        n, inv_b = z.shape[1], 1.0 / self.B
        mu, var, xc, t = self.mu[:n], self.var[:n], self.xc[i], self.tmp[:, :n]
        np.matmul(self.ones, z, out=mu)
        mu *= inv_b
        np.subtract(z, mu, out=xc)
        np.square(xc, out=t)
        np.matmul(self.ones, t, out=var)
        var *= inv_b                                   # biased batch variance (two-pass)
        mom = self.momentum                            # Keras: moving = M moving + (1-M) stat
        self.mov_mean[i] *= mom; self.mov_mean[i] += (1.0 - mom) * mu
        self.mov_var[i] *= mom; self.mov_var[i] += (1.0 - mom) * var
        var += self.eps
        np.sqrt(var, out=var)
        np.divide(1.0, var, out=self.inv[i])
        np.multiply(self.gamma[i], self.inv[i], out=self.scale[i])
        np.multiply(xc, self.scale[i], out=z)          # y = xc * gamma/sigma + beta
        z += self.beta[i]
        # elu(y) = max(y,0) + expm1(min(y,0)); elu'(y) = exp(min(y,0)) = expm1(min(y,0)) + 1
        neg = self.dact[i]
        np.greater(z, 0.0, out=t)
        np.multiply(z, t, out=out)                     # max(y, 0)
        np.subtract(z, out, out=neg)                   # min(y, 0)
        np.expm1(neg, out=neg)
        out += neg
        neg += 1.0
        out *= self.draw(i)

    def backward(self, x, y):
        """Gradients of the mean softmax-CE into self.grads; returns the batch loss."""
        z, B, L = self.z[-1], self.B, self.L
        np.max(z, axis=1, keepdims=True, out=self.rowmax)
        z -= self.rowmax
        loss = float(np.mean(z[self.rows, y]))         # -mean(z_y - logsumexp) below
        np.exp(z, out=z)
        np.sum(z, axis=1, keepdims=True, out=self.rowsum)
        loss = float(np.mean(np.log(self.rowsum))) - loss
        z /= self.rowsum
        z[self.rows, y] -= 1.0
        z *= 1.0 / B                                   # dL/dz = (softmax - onehot) / B
        dz = z
        for i in range(L - 1, -1, -1):
            x_in = x if i == 0 else self.a[i - 1]
            self.mm(x_in.T, dz, out=self.grads[i])
            np.matmul(self.ones, dz, out=self.grads[L + i])
            if i == 0:
                break                                  # no gradient w.r.t. the data
            d = self.d[i - 1]
            self.mm(dz, self.W[i].T, out=d)
            if self.bn:
                self._bn_elu_dropout_backward(i - 1, d)
            else:
                d *= self.mask[i - 1]
            dz = d
        return loss

    def _bn_elu_dropout_backward(self, i, d):
        n, inv_b, L = d.shape[1], 1.0 / self.B, self.L
        d *= self.drop[i]
        d *= self.dact[i]                              # d is now dL/dy (the BN output)
        dgamma, dbeta, t = self.grads[2 * L + i], self.grads[2 * L + (L - 1) + i], self.tmp[:, :n]
        np.matmul(self.ones, d, out=dbeta)
        np.multiply(d, self.xc[i], out=t)
        np.matmul(self.ones, t, out=dgamma)
        dgamma *= self.inv[i]                          # sum(dy * xhat)
        # dx = s*(dy - mean(dy) - xhat*mean(dy*xhat)), s = gamma*inv, xhat = xc*inv
        s = self.scale[i]
        k1, k2 = self.mu[:n], self.var[:n]             # free after forward: reuse as scratch
        np.multiply(s, self.inv[i], out=k1); k1 *= dgamma; k1 *= inv_b
        np.multiply(s, dbeta, out=k2); k2 *= inv_b
        np.multiply(self.xc[i], k1, out=t)
        d *= s
        d -= t
        d -= k2

    # ---- the pieces profiling times separately --------------------------------------------
    def _draw(self, i):
        """A fresh inverted-dropout mask: 0 with probability p, else 1/(1-p)."""
        m = self.drop[i]
        bits = self.rng.bit_generator.random_raw(m.size // 2).view(np.uint32).reshape(m.shape)
        np.greater_equal(bits, self.keep_threshold, out=m)
        m *= 1.0 / (1.0 - self.p_drop)
        return m

    def _adam(self):
        """Adam, torch form: p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps), in place."""
        b1, b2, eps = 0.9, 0.999, 1e-8
        self.t += 1
        bc1, bc2 = 1.0 - b1 ** self.t, math.sqrt(1.0 - b2 ** self.t)
        step, eps_hat = self.lr * bc2 / bc1, eps * bc2  # same formula, both sides times sqrt(bc2)
        for p, g, m, v in zip(self.params, self.grads, self.m, self.v):
            t = self.scratch[:p.size].reshape(p.shape)
            m *= b1; np.multiply(g, 1.0 - b1, out=t); m += t
            v *= b2; np.multiply(g, g, out=t); t *= 1.0 - b2; v += t
            np.sqrt(v, out=t); t += eps_hat; np.divide(m, t, out=t); t *= step
            p -= t

    def _gather(self, X, y, idx):
        np.take(X, idx, axis=0, out=self.xb)
        np.take(y, idx, out=self.yb)
        return self.xb, self.yb

    def train_epoch(self, X, y) -> float:
        """One reshuffled pass of n // B full batches; returns the mean batch loss."""
        order, total = self.rng.permutation(len(X)), 0.0
        steps = len(X) // self.B
        for s in range(steps):
            xb, yb = self.gather(X, y, order[s * self.B:(s + 1) * self.B])
            self.forward(xb)
            total += self.backward(xb, yb)
            self.adam()
        return total / steps


def _timed(fn, acc, key):
    def wrapper(*args, **kwargs):
        t0 = perf_counter()
        r = fn(*args, **kwargs)
        acc[key] += perf_counter() - t0
        return r
    return wrapper


def run(variant: str = "base", batch: int = 100, epochs: int = 3, n_samples: int = 60000,
        warmup: int = 1, profile: bool = False, seed: int = 0, threads: int | None = None) -> dict:
    """Train on synthetic MNIST-shaped data; per-epoch seconds, final loss, optional profile.

    With profile=True the GEMMs, the Adam update, the batch gather and the dropout draws are
    timed separately (perf_counter around each call, ~0.1 µs each); "elementwise" is the rest
    of the epoch: bias adds, activations, batchnorm, softmax-CE, reductions, Python overhead.
    `threads` limits the BLAS's threads (threadpoolctl, after NumPy is loaded); None leaves the
    BLAS's own default (all cores).
    """
    if threads is not None:
        from threadpoolctl import threadpool_limits
        threadpool_limits(int(threads), user_api="blas")
    X, y = synthetic_mnist(n_samples, seed=seed)
    net = Net(variant, batch, seed=seed)
    acc: dict[str, float] = defaultdict(float)
    if profile:
        net.mm = _timed(np.matmul, acc, "gemm")
        for key in ("adam", "gather", "draw"):
            setattr(net, key, _timed(getattr(net, key), acc, key))
    losses = []
    for _ in range(warmup):                            # untimed, and kept out of the profile
        losses.append(net.train_epoch(X, y))
    acc.clear()
    times = time_epochs(lambda: losses.append(net.train_epoch(X, y)), epochs, warmup=0)
    result = {"impl": "numpy", "variant": variant, "batch": batch, "n_samples": n_samples,
              "epochs": epochs, "epoch_seconds": times, "stats": Stats.of(times).as_dict(),
              "final_loss": losses[-1], "first_loss": losses[0], "steps_per_epoch": n_samples // batch,
              "threads": threads}
    if profile:
        total = sum(times)
        phases = {k: acc[k] for k in ("gemm", "adam", "gather", "draw")}
        phases["elementwise"] = total - sum(phases.values())
        steps = (n_samples // batch) * epochs
        samples = steps * batch
        weights = sum(w.size for w in net.W)
        done = (6 * weights - 2 * net.W[0].size) * samples  # no dL/dx for the first layer
        result["profile"] = {
            "fraction": {k: v / total for k, v in phases.items()},
            "ms_per_step": {k: 1e3 * v / steps for k, v in phases.items()},
            "gemm_gflops_in_loop": done / phases["gemm"] / 1e9,
            "step_gflops": 6 * weights * samples / total / 1e9,  # issue 6's count: 6 per weight
        }
    return result


def main(argv=None):
    import json

    from .common import workload_args

    a = workload_args(__doc__.splitlines()[0], VARIANTS, argv)
    print(json.dumps(run(a.variant, a.batch, a.epochs, a.samples, profile=a.profile), indent=1))


if __name__ == "__main__":
    main()
