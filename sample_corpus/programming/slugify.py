"""Turn arbitrary titles into URL-safe slugs.

A slug is the readable part of a web address, such as
``/blog/why-is-mars-red``. This module lowercases the text, strips accents
from letters (so "Crème Brûlée" becomes "creme-brulee"), and replaces every
run of characters that are not letters or digits with a single hyphen.
"""

import re
import unicodedata

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def strip_accents(text: str) -> str:
    """Remove diacritics by decomposing characters and dropping combining marks.

    Unicode normalisation form NFKD splits "é" into "e" followed by a combining
    acute accent; the accent has category "Mn" and is filtered out.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


def slugify(title: str, max_length: int = 60) -> str:
    """Return a lowercase, hyphen-separated slug for ``title``.

    Leading and trailing hyphens are removed, and the slug is cut at a hyphen
    boundary so that it never exceeds ``max_length`` characters.

    >>> slugify("  Why Is Mars Red?  ")
    'why-is-mars-red'
    >>> slugify("Crème Brûlée for Four")
    'creme-brulee-for-four'
    """
    slug = _NON_ALNUM.sub("-", strip_accents(title).lower()).strip("-")
    if len(slug) > max_length:
        slug = slug[:max_length].rsplit("-", 1)[0]
    return slug


if __name__ == "__main__":
    import doctest

    doctest.testmod()
