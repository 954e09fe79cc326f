"""The limits of the language: what the parser and the checker refuse so that checking a spec,
however hostile, ends in a few seconds with a located error instead of a hang, a RecursionError or
a MemoryError. docs/reliability.md lists them with the tests that hold them.

Model-size limits (layers after expansion, parameters, repeat counts) live with the expander in
`dnnspec.check.model`; the error cap with the renderer in `dnnspec.errors`.
"""

from __future__ import annotations

# A spec is text a person writes (or a script generates): 256 KiB is 300 times the largest
# shipped spec, and 6,000 lines of 40 characters (`repeat` and blocks make long specs short).
# lark parses 50,000-100,000 tokens a second, a token every 2 characters at worst, so this
# bounds the parse to a few seconds and its tree to about 100 MB.
MAX_SOURCE_CHARS = 2**18

# Blocks, scopes and repeats inside each other (a model body is level 1; a block instance adds
# the block's body as a level too), and expressions inside each other (each operator, call,
# list and unary minus is a level: a sum of 101 terms is 100 levels deep). Every recursive
# walk over the AST (checker, formatter, equality) stays far below Python's recursion limit.
MAX_NESTING = 100
MAX_EXPR_DEPTH = 100

# Integers are 64-bit, reals are 64-bit floats and finite: a literal or an arithmetic result
# outside that is error E014 (`10**400`, `1e400`, `1e308*10`), and `**` is refused before it
# computes a result that large (`10**10**10` is an error at once, not a hang).
MAX_INT = 2**63 - 1
