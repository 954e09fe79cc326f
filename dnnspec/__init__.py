"""dnnspec: a declarative model-spec compiler and checkpoint toolkit for deep fully-connected networks.

Public API (stable): `compile_file`, `compile_text`, `load_checkpoint`, `Model`, `SpecError`.
Imports are lazy so that `dnnspec --help` starts fast.
"""

from .version import __version__

__all__ = ["compile_file", "compile_text", "load_checkpoint", "Model", "SpecError", "UserError", "__version__"]


def __getattr__(name):
    if name in ("compile_file", "compile_text", "load_checkpoint", "Model"):
        from . import api

        return getattr(api, name)
    if name in ("SpecError", "UserError"):
        from . import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'dnnspec' has no attribute {name!r}")
