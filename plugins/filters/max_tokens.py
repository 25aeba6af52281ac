"""Filter ``max_tokens``: drop clips whose text is longer than the backbone's token budget.

Tokens are counted with ``context["token_count"]`` (a callable ``text -> int`` the runner takes
from the backbone's tokenizer). Without it the filter counts **UTF-8 bytes** — an upper bound
for byte-level BPE tokenizers and exact for byte/character tokenizers of ASCII text — and says so
in every reason, so a run without a tokenizer never drops clips quietly on a different rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field

from ttsadapt.components import DataFilter, FilterResult, Params
from ttsadapt.markers import hookimpl
from ttsadapt.types import Clip


class MaxTokensParams(Params):
    max_tokens: int = Field(256, gt=0, description="most text tokens a clip may have")


def utf8_bytes(text: str) -> int:
    """The fallback token count: UTF-8 bytes of the text."""
    return len(text.encode("utf-8"))


class MaxTokensFilter(DataFilter):
    name: ClassVar[str] = "max_tokens"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "Drop clips whose text exceeds max_tokens under the backbone's tokenizer "
        "(context token_count; fallback: UTF-8 bytes)."
    )
    Params = MaxTokensParams

    def apply(self, clips: Sequence[Clip], context: dict[str, Any] | None = None) -> FilterResult:
        count = (context or {}).get("token_count")
        unit = "tokens"
        if count is None:
            count, unit = utf8_bytes, "UTF-8 bytes (no tokenizer in context)"
        limit = self.params.max_tokens
        kept: list[Clip] = []
        dropped: list[tuple[Clip, str]] = []
        for clip in clips:
            n = int(count(clip.text))
            if n > limit:
                dropped.append((clip, f"max_tokens: {n} {unit} > max_tokens={limit}"))
            else:
                kept.append(clip)
        return FilterResult(kept, dropped)


@hookimpl
def ttsadapt_register_filters():
    return [MaxTokensFilter]
