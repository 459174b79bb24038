"""dlnotes: the importable companion package of the deep-learning engineering course notes.

Modules are named after the concept they implement, for example :mod:`dlnotes.calculus` or
:mod:`dlnotes.data`. Importing :mod:`dlnotes` itself is cheap: TensorFlow and Keras are only
imported by the modules that need them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dlnotes")
except PackageNotFoundError:  # pragma: no cover - only when run from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
