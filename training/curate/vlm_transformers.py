"""A ``VisionLanguageModel`` that runs a local vision-language model through transformers.

Works with chat-template VLMs loadable by ``AutoModelForImageTextToText`` (Qwen2.5-VL, Qwen3-VL,
LLaVA, ...). Weights are read from a local folder only; nothing is downloaded. A batch of requests
is one left-padded ``generate`` call. For the highest throughput use the vLLM backend
(``vlm_vllm.py``), which has the same interface.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
        """One ``generate`` call for the whole batch. Left padding keeps every prompt's last token in
        the last column, so the new tokens of all rows start at the same position."""
        from ..data.images import open_image

        if not requests:
            return []
        conversations = [
            [{"role": "user", "content": [*({"type": "image", "image": open_image(p)} for p in r.images),
                                          {"type": "text", "text": r.prompt}]}]
            for r in requests
        ]
        inputs = self._processor.apply_chat_template(
            conversations, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
            processor_kwargs={"padding": True, "padding_side": "left"},
        ).to(self._config.device)
        with self._torch.inference_mode():
            output = self._model.generate(**inputs, max_new_tokens=self._config.max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        return self._processor.batch_decode(new_tokens, skip_special_tokens=True)
