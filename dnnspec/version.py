"""The dnnspec version, in a module of its own so that anything can import it without the package's API.

pyproject.toml states the same number (`[project] version`); keep the two equal.
"""

__version__ = "0.1.0"
