"""Imports every catalogue module so that all registries are filled.

A new catalogue module is added here once; a new entry in an existing one needs nothing.
"""

from __future__ import annotations

import importlib

CATALOGUE_MODULES = (
    "dnnspec.ops.activations",
    "dnnspec.ops.layers",
    "dnnspec.ops.residual",
    "dnnspec.init",
    "dnnspec.optim",
    "dnnspec.lbfgs",
    "dnnspec.schedules",
    "dnnspec.losses",
    "dnnspec.regularizers",
    "dnnspec.datasets",
    "dnnspec.pretrain",
    "dnnspec.augment",
)


def load() -> None:
    for name in CATALOGUE_MODULES:
        importlib.import_module(name)
