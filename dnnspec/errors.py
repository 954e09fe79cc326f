"""Errors a user can cause, and how they are shown.

`SpecError` carries `Diagnostic`s (code, severity, message, span, hint), rendered like a
compiler's: ``file:line:col: error: message`` then the source line and a caret, or
``file: error: message`` for a diagnostic about the whole file (no span). Every diagnostic starts
with its file, so editors and CI logs can jump to it. Everything
else a user can get wrong at run time (a missing data file, a damaged checkpoint) raises a
`UserError` subclass with a plain message. The CLI turns these into exit codes; only a
genuine bug reaches the user as a traceback, and only with ``--debug``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A region of source text: 1-based line and column of its start (and end)."""

    file: str
    line: int
    col: int
    end_line: int = 0
    end_col: int = 0


@dataclass(frozen=True)
class Diagnostic:
    code: str  # "E101"; stable, documented in docs/language.md
    message: str
    span: Span | None = None
    severity: str = "error"  # "error" or "warning"
    hint: str | None = None


class UserError(Exception):
    """A mistake of the user's (bad input, missing file): exit code 1, no traceback."""

    exit_code = 1


class DataError(UserError):
    """A data file is missing, unreadable, or has the wrong shapes or labels."""


class CheckpointError(UserError):
    """A checkpoint is missing, damaged, of an unknown format version, or does not fit."""


class SpecError(UserError):
    """One or more errors in a spec: exit code 2.

    `sources` maps file names to their text, for the source lines under the messages; `file` is
    the spec the diagnostics are about, named by those without a span (default: the first file
    in `sources`, which is the spec itself: overrides come after it).
    """

    exit_code = 2

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str] | None = None,
                 file: str | None = None, stopped: bool = False):
        self.diagnostics = list(diagnostics)
        self.sources = sources or {}
        self.file = file if file is not None else main_file(self.sources)
        self.stopped = stopped  # the checker stopped at MAX_ERRORS: there may be more
        super().__init__(render_all(self.diagnostics, self.sources, self.file, stopped))


def main_file(sources: dict[str, str]) -> str | None:
    """The spec a set of sources belongs to: the first one (the checker adds the spec first)."""
    return next(iter(sources), None)


# What a report shows: the first MAX_SHOWN diagnostics, then "... and N more errors"; a source
# line longer than MAX_LINE is cut to a window around the caret, a message or hint longer than
# MAX_MESSAGE is cut too (a 50,000-times repeated argument makes one line of megabytes).
MAX_SHOWN = 50
MAX_LINE = 120
MAX_MESSAGE = 500
# The checker stops after this many errors (a `repeat` over a mistake repeats the mistake).
MAX_ERRORS = 1000


def render(d: Diagnostic, sources: dict[str, str], file: str | None = None,
           lines: dict[str, list[str]] | None = None) -> str:
    """``file:line:col: error: message [CODE]`` + source line + caret (+ hint).

    A diagnostic without a span is about the whole file: ``file: error: message [CODE]``, where
    the file is `file`, else the spec of `sources` (see `main_file`). `lines` caches the sources
    split into lines (as the parser counts them: at "\\n" only).
    """
    message, hint = _cut(d.message), _cut(d.hint) if d.hint else None
    if d.span is None:
        where = file if file is not None else main_file(sources)
        head = (f"{where}: " if where else "") + f"{d.severity}: {message} [{d.code}]"
        return head + (f"\n  hint: {hint}" if hint else "")
    s = d.span
    out = [f"{s.file}:{s.line}:{s.col}: {d.severity}: {message} [{d.code}]"]
    if lines is None or s.file not in lines:
        text = sources.get(s.file)
        split = text.split("\n") if text is not None else None
        if lines is not None and split is not None:
            lines[s.file] = split
    else:
        split = lines[s.file]
    if split is not None and 1 <= s.line <= len(split):
        src = split[s.line - 1].rstrip("\r")
        width = 1
        if s.end_line == s.line and s.end_col > s.col:
            width = s.end_col - s.col
        src, at, width = _window(src, s.col - 1, width)
        gutter = f"{s.line:>4} | "
        out.append(gutter + src)
        out.append(" " * (len(gutter) + at) + "^" + "~" * (width - 1))
    if hint:
        out.append(f"  hint: {hint}")
    return "\n".join(out)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def _window(src: str, at: int, width: int) -> tuple[str, int, int]:
    """A long source line cut to MAX_LINE characters around column `at` (0-based), marked with
    '...' where cut; (text, caret column in it, caret width)."""
    if len(src) <= MAX_LINE:
        return src, at, width
    start = max(0, min(at - MAX_LINE // 3, len(src) - MAX_LINE))
    end = start + MAX_LINE
    text = ("..." if start else "") + src[start:end] + ("..." if end < len(src) else "")
    at = at - start + (3 if start else 0)
    width = max(1, min(width, MAX_LINE - (at - (3 if start else 0))))
    return text, at, width


def render_all(diags: list[Diagnostic], sources: dict[str, str], file: str | None = None,
               stopped: bool = False) -> str:
    """Every diagnostic up to MAX_SHOWN, then how many more errors (and warnings) there are, then
    the error count; `stopped`: the checker stopped at MAX_ERRORS, so there may be more."""
    errors = sum(d.severity == "error" for d in diags)
    lines: dict[str, list[str]] = {}
    shown = diags[:MAX_SHOWN]
    body = "\n".join(render(d, sources, file, lines) for d in shown)
    rest = diags[MAX_SHOWN:]
    if rest:
        more_errors = sum(d.severity == "error" for d in rest)
        more_warnings = len(rest) - more_errors
        parts = [f"{n} more {word}{'s' * (n != 1)}" for n, word in ((more_errors, "error"), (more_warnings, "warning"))
                 if n]
        body += "\n... and " + " and ".join(parts) + " not shown"
    if stopped:
        return body + f"\n{errors} errors (checking stopped there; there may be more)"
    return body + (f"\n{errors} error{'s' * (errors != 1)}" if errors else "")


class TooManyErrors(Exception):
    """Raised by `Diagnostics.error` at its limit; the checker reports what it has."""


@dataclass
class Diagnostics:
    """Collects diagnostics across checker passes (all errors of one pass are reported)."""

    items: list[Diagnostic] = field(default_factory=list)
    limit: int | None = None  # raise TooManyErrors on reaching this many errors
    count: int = 0

    def error(self, code: str, message: str, span: Span | None = None, hint: str | None = None) -> None:
        self.items.append(Diagnostic(code, message, span, "error", hint))
        self.count += 1
        if self.limit is not None and self.count >= self.limit:
            raise TooManyErrors

    def warning(self, code: str, message: str, span: Span | None = None, hint: str | None = None) -> None:
        self.items.append(Diagnostic(code, message, span, "warning", hint))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]
