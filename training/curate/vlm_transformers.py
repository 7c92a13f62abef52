"""A ``VisionLanguageModel`` that runs a local vision-language model through transformers.

Works with chat-template VLMs loadable by ``AutoModelForImageTextToText`` (Qwen2.5-VL, Qwen3-VL,
...). Weights are read from a local folder only; nothing is downloaded. For millions of images
serve the model with vLLM (or Ray Data LLM) instead and implement the same ``generate``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.errors import ConfigError
from ..data.local_weights import check_local_weights
from .vlm import VLMRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransformersVLMConfig:
    model_path: Path
    device: str = "cpu"
    dtype: str = "auto"  # "auto", "float32", "bfloat16", "float16"
    max_new_tokens: int = 128

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_path", Path(self.model_path))
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}.")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}.")


class TransformersVLM:
    def __init__(self, config: TransformersVLMConfig) -> None:
        check_local_weights(config.model_path, "vision-language model")
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self._config = config
        self._torch = torch
        dtype = "auto" if config.dtype == "auto" else getattr(torch, config.dtype)
        logger.info("loading VLM from %s", config.model_path)
        self._processor = AutoProcessor.from_pretrained(config.model_path, local_files_only=True)
        self._model = AutoModelForImageTextToText.from_pretrained(
            config.model_path, local_files_only=True, dtype=dtype
        ).to(config.device).eval()

    def generate(self, requests: Sequence[VLMRequest]) -> list[str]:
        # One request at a time: image token counts differ per request, and batching VLM chat
        # inputs needs model-specific padding; throughput belongs to vLLM, not this adapter.
        return [self._generate_one(r) for r in requests]

    def _generate_one(self, request: VLMRequest) -> str:
        from ..data.images import open_image

        content: list[dict[str, Any]] = [{"type": "image", "image": open_image(p)} for p in request.images]
        content.append({"type": "text", "text": request.prompt})
        inputs = self._processor.apply_chat_template(
            [{"role": "user", "content": content}],
            add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
        ).to(self._config.device)
        with self._torch.inference_mode():
            output = self._model.generate(**inputs, max_new_tokens=self._config.max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        return self._processor.batch_decode(new_tokens, skip_special_tokens=True)[0]
