"""Visible warnings on a page: the box that says a page runs on a stand-in."""

from __future__ import annotations

import contextlib
import html
import re

STAND_IN_CLASS = "dlnotes-stand-in"
"""CSS class of the warning box of :func:`show_stand_in`; the book's tests look for it."""


class StandInNotice:
    """A warning that a page runs on a stand-in, shown as a box in notebooks and in the book.

    Rendered as HTML (an admonition carrying the CSS class :data:`STAND_IN_CLASS`) where rich output
    is shown, as text elsewhere. Text between backticks is shown as code.

    Args:
        what: What is replaced, e.g. ``"synthetic images instead of Tiny ImageNet"``.
        reason: Why the real thing is missing.
        remedy: How to get the real thing.

    Raises:
        ValueError: If one of the texts is blank.
    """

    def __init__(self, what: str, reason: str, remedy: str) -> None:
        for name, value in (("what", what), ("reason", reason), ("remedy", remedy)):
            if not value.strip():
                raise ValueError(f"{name} must not be blank, got {value!r}")
        self.what, self.reason, self.remedy = what.strip(), reason.strip(), remedy.strip()

    def _repr_html_(self) -> str:
        def rich(text: str) -> str:
            return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))

        return (
            f'<div class="admonition warning {STAND_IN_CLASS}">'
            f'<p class="admonition-title">Stand-in: {rich(self.what)}</p>'
            f"<p>{rich(self.reason)} <strong>The results on this page are meaningless.</strong>"
            f"</p><p>{rich(self.remedy)}</p></div>"
        )

    def __repr__(self) -> str:
        return (
            f"WARNING, stand-in: {self.what}. {self.reason} The results on this page are "
            f"meaningless. {self.remedy}"
        )


def show_stand_in(what: str, reason: str, remedy: str) -> None:
    """Show a :class:`StandInNotice`: a warning box in a notebook, a text line elsewhere.

    Args:
        what: What is replaced.
        reason: Why the real thing is missing.
        remedy: How to get the real thing.

    Raises:
        ValueError: If one of the texts is blank.
    """
    notice = StandInNotice(what, reason, remedy)
    shell = None
    with contextlib.suppress(ImportError):
        from IPython import get_ipython

        shell = get_ipython()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        from IPython.display import display

        display(notice)
    else:
        print(repr(notice), flush=True)
