"""The `dnnspec` console script and `python -m dnnspec`: a Ctrl-C while the command line is
still loading (NumPy, h5py, ... take a moment) exits quietly with 130, before any module of
dnnspec that could print a traceback is imported."""

import os
import signal
import sys


def _interrupted_while_loading(signum, frame):
    # Ends the process at once: an exception raised here could land in a destructor or a weakref
    # callback of an importing module and be swallowed ("Exception ignored"); nothing is written yet.
    os.write(2, b"interrupted\n")
    os._exit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted_while_loading)
    signal.signal(signal.SIGTERM, _interrupted_while_loading)
    from .cli import entry

    signal.signal(signal.SIGINT, signal.default_int_handler)  # commands handle KeyboardInterrupt
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        entry()
    except KeyboardInterrupt:  # one that landed between a command's own handling and the exit
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # leaving: a late Ctrl-C changes nothing
