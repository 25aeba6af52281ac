import numpy as np
import pytest

from ttsadapt.plugins.metrics._textnorm import headline_rate, normalize
from ttsadapt.plugins.metrics.cer import CER, error_rates
from ttsadapt.types import EvalItem


def test_normalisation_is_language_aware():
    assert normalize("He was  ill-disposed, Mr. Smith's!", "en") == "he was ill disposed mr smith's"
    assert normalize("こんにちは、 世界。", "ja") == "こんにちは世界"
    assert normalize("e\u0301té", "fr") == "été"  # NFC
    assert headline_rate("km") == "cer" and headline_rate("ko-KR") == "cer"
    assert headline_rate("en-US") == "wer"
    assert error_rates("Hello, World!", "hello world", "en") == {"cer": 0.0, "wer": 0.0}
    assert error_rates("สวัสดี ครับ", "สวัสดีครับ", "th")["cer"] == 0.0


@pytest.mark.slow
def test_default_backend_reaches_cer_target_on_audiobook(librivox):
    m = CER()
    items = [
        EvalItem(id=i, audio=a, sample_rate=sr, text=t, language="en") for i, a, sr, t in librivox
    ]
    scores = m.score(items)
    cer = np.mean([s.values["cer"] for s in scores])
    print(f"\nWhisper base CER on the audiobook clips: {cer:.4f}")
    assert cer <= 0.10
    assert all(s.extra["transcript"] for s in scores)


def test_tiny_en_refuses_other_languages_and_bad_items(librivox):
    _, a, sr, t = librivox[1]
    m = CER(model="tiny.en")
    ok, ko, no_text = m.score(
        [
            EvalItem(id="en", audio=a, sample_rate=sr, text=t, language="en"),
            EvalItem(id="ko", audio=a, sample_rate=sr, text=t, language="ko"),
            EvalItem(id="nt", audio=a, sample_rate=sr, text="", language="en"),
        ]
    )
    assert ok.values["cer"] < 0.2
    assert ko.error.startswith("unsupported language")
    assert no_text.error.startswith("missing text")
