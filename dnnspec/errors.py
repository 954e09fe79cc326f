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
                 file: str | None = None):
        self.diagnostics = list(diagnostics)
        self.sources = sources or {}
        self.file = file if file is not None else main_file(self.sources)
        super().__init__(render_all(self.diagnostics, self.sources, self.file))


def main_file(sources: dict[str, str]) -> str | None:
    """The spec a set of sources belongs to: the first one (the checker adds the spec first)."""
    return next(iter(sources), None)


def render(d: Diagnostic, sources: dict[str, str], file: str | None = None) -> str:
    """``file:line:col: error: message [CODE]`` + source line + caret (+ hint).

    A diagnostic without a span is about the whole file: ``file: error: message [CODE]``, where
    the file is `file`, else the spec of `sources` (see `main_file`).
    """
    if d.span is None:
        where = file if file is not None else main_file(sources)
        head = (f"{where}: " if where else "") + f"{d.severity}: {d.message} [{d.code}]"
        return head + (f"\n  hint: {d.hint}" if d.hint else "")
    s = d.span
    out = [f"{s.file}:{s.line}:{s.col}: {d.severity}: {d.message} [{d.code}]"]
    text = sources.get(s.file)
    if text is not None:
        lines = text.splitlines()
        if 1 <= s.line <= len(lines):
            src = lines[s.line - 1]
            width = 1
            if s.end_line == s.line and s.end_col > s.col:
                width = s.end_col - s.col
            gutter = f"{s.line:>4} | "
            out.append(gutter + src)
            out.append(" " * (len(gutter) + s.col - 1) + "^" + "~" * (width - 1))
    if d.hint:
        out.append(f"  hint: {d.hint}")
    return "\n".join(out)


def render_all(diags: list[Diagnostic], sources: dict[str, str], file: str | None = None) -> str:
    errors = sum(d.severity == "error" for d in diags)
    body = "\n".join(render(d, sources, file) for d in diags)
    return body + (f"\n{errors} error{'s' * (errors != 1)}" if errors else "")


@dataclass
class Diagnostics:
    """Collects diagnostics across checker passes (all errors of one pass are reported)."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, code: str, message: str, span: Span | None = None, hint: str | None = None) -> None:
        self.items.append(Diagnostic(code, message, span, "error", hint))

    def warning(self, code: str, message: str, span: Span | None = None, hint: str | None = None) -> None:
        self.items.append(Diagnostic(code, message, span, "warning", hint))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]
