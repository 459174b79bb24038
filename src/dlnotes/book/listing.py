"""Show the package's own code in a chapter, as installed.

A chapter that teaches a function shows its real source rather than a paraphrase. Sphinx's
``literalinclude`` would do that in the book only (Colab and Jupyter show the raw directive), so
the chapters call :func:`show_code` in a code cell instead: the book, Jupyter and Colab all show
the highlighted source of the version of ``dlnotes`` that actually runs.
"""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CodeListing:
    """Source code that notebooks display as a highlighted Python block.

    Attributes:
        source: The code, dedented.
        origin: Where it comes from, e.g. ``"dlnotes.models.resnet.conv_unit"``.
    """

    source: str
    origin: str

    def _repr_markdown_(self) -> str:
        fence = "````" if "```" in self.source else "```"
        return f"{fence}python\n{self.source.rstrip()}\n{fence}\n"

    def __str__(self) -> str:
        return self.source


def show_code(obj: Any) -> CodeListing:
    """The source of a function, class or method of the installed package, for display.

    The last expression of a cell, it is shown as a highlighted code block (Markdown output)
    in the book, Jupyter and Colab.

    Args:
        obj: A function, class or method (``models.conv_unit``, ``mixing.MixImages.call``).

    Returns:
        The listing.

    Raises:
        ValueError: If ``obj`` has no Python source (a built-in, an instance, a module).
    """
    if inspect.ismodule(obj) or not (
        inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)
    ):
        raise ValueError(f"show_code shows a function, class or method, got {obj!r}")
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError) as error:
        raise ValueError(f"no Python source for {obj!r}: {error}") from error
    origin = f"{obj.__module__}.{obj.__qualname__}"
    return CodeListing(source=textwrap.dedent(source), origin=origin)
