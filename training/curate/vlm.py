"""Vision-language model steps: style-only / content-only captions and a quality filter.

The model sits behind ``VisionLanguageModel`` (a batch of prompt + images in, text out), so the
prompting, parsing and thresholding here are tested with a fake, and the real model
(``TransformersVLM`` in ``vlm_transformers.py`` or ``VLLMVLM`` in ``vlm_vllm.py``) is swapped in by the caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..data.errors import ConfigError, LabelError, VLMOutputError

SCORE_KEYS = ("stylisation", "layout", "identity")
SCORE_RANGE = (0.0, 10.0)

STYLE_CAPTION_PROMPT = (
    "Describe only the artistic style of this image: medium, colour palette, line and brushwork, "
    "texture, lighting and rendering. Do not mention any object, person, animal, place or action "
    "shown. Answer with one sentence of at most 60 words and nothing else."
)
CONTENT_CAPTION_PROMPT = (
    "Describe only the content of this image: the objects, people, animals and scene, and where they "
    "are in the frame. Do not mention the artistic style, medium, colour palette, brushwork or texture. "
    "Answer with one sentence of at most 60 words and nothing else."
)
QUALITY_PROMPT = (
    "Image 1 is a content photo, image 2 is a style reference, image 3 is a stylised version of image 1. "
    "Rate image 3 from 0 to 10 on: stylisation (how fully it takes on the style of image 2), "
    "layout (how well it keeps the composition and layout of image 1), and identity (how well it keeps "
    "the identity of the subjects of image 1). Reply with only this JSON: "
    '{"stylisation": <0-10>, "layout": <0-10>, "identity": <0-10>}'
)
CAPTION_PROMPTS = {"style": STYLE_CAPTION_PROMPT, "content": CONTENT_CAPTION_PROMPT}


@dataclass(frozen=True)
class VLMRequest:
    prompt: str
    images: tuple[Path, ...]


class VisionLanguageModel(Protocol):
    def generate(self, requests: Sequence[VLMRequest]) -> list[str]:
        """One answer per request, in order."""
        ...


# ---------------------------------------------------------------- parsing

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_OBJECT = re.compile(r"\{[^{}]*\}", re.S)
_LINE = re.compile(
    r"^[\s>*#\-\d.)]*\**\s*(?P<key>[A-Za-z][A-Za-z _-]*?)\s*\**\s*[:=]\s*\**\s*"
    r"(?P<value>-?\d+(?:\.\d+)?)\s*(?:/\s*(?P<scale>\d+(?:\.\d+)?))?"
)
_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*(\d+(?:\.\d+)?))?\s*$")
_SPELLINGS = {"stylization": "stylisation", "stylisation": "stylisation"}


def canonical_key(name: str, keys: Sequence[str] = SCORE_KEYS) -> str | None:
    """Map 'Identity consistency', 'layout_preservation', 'Stylization' ... to a score key."""
    words = re.split(r"[\s_-]+", name.strip().lower())
    for word in words:
        word = _SPELLINGS.get(word, word)
        if word in keys:
            return word
    return None


def parse_scores(
    text: str, keys: Sequence[str] = SCORE_KEYS, score_range: tuple[float, float] = SCORE_RANGE
) -> dict[str, float]:
    """Scores from a JSON object (possibly fenced or inside prose) or from 'key: score' lines."""
    found = _scores_from_json(text, keys, score_range) or _scores_from_lines(text, keys, score_range)
    missing = [k for k in keys if k not in found]
    if missing:
        raise VLMOutputError(
            f"could not read score(s) {missing} from the model output {_excerpt(text)}. Expected JSON like "
            f'{{"{keys[0]}": 7, ...}} or lines like "{keys[0]}: 7".'
        )
    low, high = score_range
    for key, value in found.items():
        if not low <= value <= high:
            raise VLMOutputError(
                f"score {key}={value:g} is outside [{low:g}, {high:g}] in the model output {_excerpt(text)}."
            )
    return {k: found[k] for k in keys}


def _scores_from_json(text: str, keys: Sequence[str], score_range: tuple[float, float]) -> dict[str, float]:
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [m.group(0) for m in _OBJECT.finditer(text)]
    for candidate in candidates:
        try:
            obj = json.loads(candidate.strip())
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        scores = {}
        for name, value in obj.items():
            key = canonical_key(str(name), keys)
            number = _number(value, score_range)
            if key is not None and number is not None and key not in scores:
                scores[key] = number
        if scores:
            return scores
    return {}


def _scores_from_lines(text: str, keys: Sequence[str], score_range: tuple[float, float]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        key = canonical_key(m.group("key"), keys)
        if key is None or key in scores:
            continue
        scores[key] = _rescaled(float(m.group("value")), m.group("scale"), score_range)
    return scores


def _number(value: Any, score_range: tuple[float, float]) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = _NUMBER.match(value)
        if m:
            return _rescaled(float(m.group(1)), m.group(2), score_range)
    return None


def _rescaled(value: float, scale: str | None, score_range: tuple[float, float]) -> float:
    """'4/5' on a 0-10 range becomes 8; a missing or matching denominator leaves the value alone."""
    if scale is None or float(scale) == 0 or float(scale) == score_range[1]:
        return value
    return value / float(scale) * score_range[1]


def _excerpt(text: str, limit: int = 160) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def clean_caption(text: str) -> str:
    """Strip quotes and 'Caption:'-style prefixes; refuse an empty answer."""
    caption = re.sub(r"^\s*(?:caption|description|style|content)\s*:\s*", "", text.strip(), flags=re.I)
    caption = caption.strip().strip('"').strip()
    if not caption:
        raise VLMOutputError(f"the model returned an empty caption ({_excerpt(text)}).")
    return caption


# ---------------------------------------------------------------- filtering


@dataclass(frozen=True)
class QualityThresholds:
    """Minimum score per key; an item is kept only when every score reaches its minimum."""

    minimums: Mapping[str, float] = field(default_factory=lambda: {"stylisation": 6.0, "layout": 6.0, "identity": 6.0})

    def __post_init__(self) -> None:
        unknown = sorted(set(self.minimums) - set(SCORE_KEYS))
        if unknown:
            raise LabelError(f"unknown score name(s) {unknown} in thresholds; known: {list(SCORE_KEYS)}.")
        low, high = SCORE_RANGE
        for key, value in self.minimums.items():
            if not low <= value <= high:
                raise ConfigError(f"threshold for {key} must be within [{low:g}, {high:g}], got {value}.")


@dataclass(frozen=True)
class QualityVerdict:
    keep: bool
    scores: dict[str, float]
    failed: tuple[str, ...]  # score keys below their threshold


def judge(scores: Mapping[str, float], thresholds: QualityThresholds) -> QualityVerdict:
    failed = tuple(k for k, minimum in thresholds.minimums.items() if scores[k] < minimum)
    return QualityVerdict(not failed, dict(scores), failed)


def quality_request(content_image: Path, style_image: Path, output_image: Path) -> VLMRequest:
    return VLMRequest(QUALITY_PROMPT, (content_image, style_image, output_image))


def caption_request(image: Path, kind: str) -> VLMRequest:
    if kind not in CAPTION_PROMPTS:
        raise LabelError(f"unknown caption kind {kind!r}; choose one of {sorted(CAPTION_PROMPTS)}.")
    return VLMRequest(CAPTION_PROMPTS[kind], (image,))


@dataclass(frozen=True)
class CaptionWorker:
    """Batch function for an executor: items are {"id", "image": absolute path} dicts."""

    model: VisionLanguageModel
    kind: str

    def __call__(self, items: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        answers = self.model.generate([caption_request(Path(it["image"]), self.kind) for it in items])
        return [{"id": it["id"], f"{self.kind}_caption": clean_caption(a)} for it, a in zip(items, answers)]


@dataclass(frozen=True)
class QualityWorker:
    """Batch function: items carry "id", "content_image", "style_image", "output_image" (absolute).

    With ``skip_unparseable`` an unreadable answer becomes a dropped row with an ``error`` field
    instead of stopping the run.
    """

    model: VisionLanguageModel
    thresholds: QualityThresholds
    skip_unparseable: bool = False

    def __call__(self, items: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        requests = [quality_request(Path(it["content_image"]), Path(it["style_image"]), Path(it["output_image"]))
                    for it in items]
        rows = []
        for item, answer in zip(items, self.model.generate(requests)):
            try:
                verdict = judge(parse_scores(answer), self.thresholds)
            except VLMOutputError as e:
                if not self.skip_unparseable:
                    raise VLMOutputError(f"item {item['id']!r}: {e}") from None
                rows.append({"id": item["id"], "keep": False, "scores": None, "failed": [], "error": str(e)})
                continue
            rows.append({"id": item["id"], "keep": verdict.keep, "scores": verdict.scores,
                         "failed": list(verdict.failed)})
        return rows
