"""What every command shares: exit codes, error handling, the --set option, warnings."""

from __future__ import annotations

import functools
import signal
import sys

import click

EXIT_OK, EXIT_RUNTIME, EXIT_SPEC = 0, 1, 2


def handle_errors(fn):
    """Turn user errors into messages and exit codes."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..errors import SpecError, UserError

        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return fn(*args, **kwargs)
        except SpecError as e:
            if debug:
                raise
            click.echo(str(e), err=True)
            sys.exit(EXIT_SPEC)
        except UserError as e:
            if debug:
                raise
            code = getattr(e, "exit_code", EXIT_RUNTIME)
            if code >= 128:  # stopped by a signal: a second one while leaving changes nothing
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            click.echo(f"error: {e}", err=True)
            sys.exit(code)
        except BrokenPipeError:  # `dnnspec ... | head`: the reader left; not an error
            sys.stderr.close()
            sys.exit(EXIT_OK)
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            click.echo("interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as e:  # a bug in dnnspec, not the user's fault
            if debug:
                raise
            click.echo(f"internal error: {type(e).__name__}: {e}\n(run with --debug for a traceback; "
                       "please report it)", err=True)
            sys.exit(EXIT_RUNTIME)

    return wrapper


def warn(program, allow=()) -> None:
    """Print the program's warnings, less the codes `--allow` silences."""
    from ..check.lints import without
    from ..errors import render

    for d in without(program.warnings, allow):  # a warning without a span names the spec file, as errors do
        click.echo(render(d, getattr(program, "sources", {}), getattr(program, "file", None)), err=True)


allow_option = click.option("--allow", "allow", multiple=True, metavar="ID",
                            help="Silence the lint with this code, e.g. W108 (repeatable; or `allow \"W108\"` in the spec).")


overrides_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                                help="Override a spec value, e.g. train.optimizer.lr=0.01 (repeatable).")


