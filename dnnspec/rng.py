"""Named random streams: every consumer of randomness gets its own generator derived from
(seed, name), so adding a layer or a dropout op never changes anyone else's numbers.

The streams are PCG64; their state is plain integers, saved in checkpoints as JSON.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stream(seed: int, *names: str) -> np.random.Generator:
    """The generator for (seed, names...), e.g. ``stream(42, "init", "dnn/hidden1/kernel")``."""
    digest = hashlib.sha256("\x1f".join(names).encode()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *words])))


def get_state(gen: np.random.Generator) -> dict:
    return gen.bit_generator.state


def set_state(gen: np.random.Generator, state: dict) -> None:
    gen.bit_generator.state = state
