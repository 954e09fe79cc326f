"""The dnnspec version, in a module of its own so that anything can import it without the package's API.

pyproject.toml reads it from here (`[tool.hatch.version]`): this is the one place it is written.
"""

__version__ = "0.1.0"
