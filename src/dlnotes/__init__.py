"""dlnotes: the importable companion package of the deep-learning engineering course notes.

The package is layered; each layer may import only from the layers before it (a test enforces
it):

1. :mod:`dlnotes.runtime` — quiet imports, devices, run profiles, paths, files (standard library);
2. :mod:`dlnotes.theory` — the derivations in NumPy and SymPy (never TensorFlow or Keras);
3. :mod:`dlnotes.data` — Tiny ImageNet on disk, decoding, augmentation, input pipelines;
4. :mod:`dlnotes.models` — the ResNet, transfer learning, pretrained classifiers;
5. :mod:`dlnotes.training` — configuration, compiling, callbacks, the trainer;
6. :mod:`dlnotes.book` — the Sphinx extension of the book, plots and diagrams.

Modules are named after the concept they implement. Importing :mod:`dlnotes` itself is cheap: no
framework, not even NumPy, is imported until a module that needs it is.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dlnotes")
except PackageNotFoundError:  # pragma: no cover - only when run from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
