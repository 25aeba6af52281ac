"""Language tags: which tags a manifest may carry.

A tag is a BCP-47-style code whose primary subtag is an ISO 639-1 code (``en``, ``km``) or an
ISO 639-2/3 three-letter code (``yue``), optionally followed by region/script subtags
(``en-US``, ``zh-Hant``). Two-letter primary subtags are checked against the ISO 639-1 list below;
three-letter ones are checked for shape only (the ISO 639-3 list has ~7,900 entries).
"""

from __future__ import annotations

import re

ISO_639_1: frozenset[str] = frozenset(
    """aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv
    cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht
    hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la
    lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj
    om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv
    sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu""".split()
)

_TAG = re.compile(r"^(?P<primary>[a-z]{2,3})(?:-[A-Za-z0-9]{2,8})*$")


def primary_subtag(tag: str) -> str:
    """``"en-US"`` -> ``"en"``."""
    return tag.split("-", 1)[0].lower()


def language_tag_problem(tag: object, allowed: set[str] | None = None) -> str | None:
    """Return why ``tag`` is not a usable language tag, or ``None`` when it is.

    With ``allowed`` the tag (or its primary subtag) must be one of those; otherwise it must be a
    well-formed tag with a known ISO 639-1 primary subtag (or a three-letter ISO 639-2/3 shape).
    """
    if not isinstance(tag, str) or not tag:
        return f"language must be a non-empty string, got {tag!r}"
    if allowed is not None:
        if tag in allowed or primary_subtag(tag) in allowed:
            return None
        return f"language {tag!r} is not one of the languages allowed here: {sorted(allowed)}"
    match = _TAG.match(tag)
    if not match:
        return f"language {tag!r} is not a language tag like 'en' or 'en-US'"
    primary = match.group("primary")
    if len(primary) == 2 and primary not in ISO_639_1:
        return f"language {tag!r}: '{primary}' is not an ISO 639-1 language code"
    return None
