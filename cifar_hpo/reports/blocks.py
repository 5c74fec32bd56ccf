"""Generated blocks of a Markdown file: the text between ``<!-- RESULTS:name -->`` and
``<!-- /RESULTS:name -->``, rewritten in place while everything around it stays as it was."""

from __future__ import annotations

from pathlib import Path

from cifar_hpo.errors import CifarHpoError

#: the block ``cifar-hpo reproduce`` writes, and the writers' default
MARKER = "readme-table"


class MarkerError(CifarHpoError):
    """A block's markers are unusable: one without the other, repeated, or out of order."""


def markers(name: str = MARKER) -> tuple[str, str]:
    """The opening and closing marker lines of the results block ``name``."""
    return f"<!-- RESULTS:{name} -->", f"<!-- /RESULTS:{name} -->"


def replace_block(text: str, body: str, name: str = MARKER, where: str = "text") -> str:
    """``text`` with what lies between the ``name`` markers replaced by ``body``.

    Args:
        text: the whole file.
        body: the new block content, without the marker lines.
        name: the block's name (``RESULTS:<name>``).
        where: how the error messages name ``text`` (a path).

    Raises:
        MarkerError: a marker is missing, repeated, or the closing one comes first.
    """
    start, end = markers(name)
    for marker, other in ((start, end), (end, start)):
        if marker not in text:
            half = f" ({other!r} is there)" if other in text else ""
            raise MarkerError(f"{where}: no {marker!r} marker{half}; add both marker lines")
        if text.count(marker) > 1:
            raise MarkerError(f"{where}: {marker!r} appears {text.count(marker)} times; keep one")
    i, j = text.index(start), text.index(end)
    if j < i:
        raise MarkerError(f"{where}: {end!r} comes before {start!r}")
    return text[:i] + f"{start}\n{body.rstrip()}\n{end}" + text[j + len(end) :]


def rewrite_readme(path: str | Path, body: str, name: str = MARKER) -> bool:
    """Replace what is between the ``name`` markers of ``path`` with ``body``.

    When both markers are missing, a ``## Reproduced results`` section holding them is inserted
    before ``## Development`` (or appended at the end), so a fresh README gets its block.

    Returns:
        True when the markers were inserted, False when an existing block was rewritten.

    Raises:
        OSError: the file cannot be read or written.
        MarkerError: only one of the two markers is there, one is repeated, or they are out of
            order (a ``ValueError``).
    """
    path = Path(path)
    text = path.read_text()
    start, end = markers(name)
    if start in text or end in text:
        path.write_text(replace_block(text, body, name, where=str(path)))
        return False
    section = f"## Reproduced results\n\n{start}\n{body.rstrip()}\n{end}\n\n"
    anchor = text.find("\n## Development")
    if anchor >= 0:
        text = text[: anchor + 1] + section + text[anchor + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    path.write_text(text)
    return True
