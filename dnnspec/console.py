"""The `dnnspec` console script and `python -m dnnspec`: a Ctrl-C while the command line is
still loading (NumPy, h5py, ... take a moment) exits quietly with 130, before any module of
dnnspec that could print a traceback is imported."""

import signal
import sys


def _interrupted_while_loading(signum, frame):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C changes nothing: we are leaving
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stderr.write("interrupted\n")
    raise SystemExit(128 + signum)


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
