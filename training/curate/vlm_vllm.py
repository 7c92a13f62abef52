"""A ``VisionLanguageModel`` served by vLLM's offline engine, for captioning/filtering at scale.

vLLM is optional and large (CUDA builds): it is imported only when this backend is constructed,
and a clear error says how to install it. A batch of requests is one ``LLM.chat`` call, which vLLM
schedules with continuous batching. Weights come from a local folder only.
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

VLLM_INSTALL_HINT = "the vllm backend needs vLLM, which is not installed. Install it on a CUDA machine: pip install vllm"


@dataclass(frozen=True)
class VLLMConfig:
    model_path: Path
    max_new_tokens: int = 128
    max_images_per_prompt: int = 3  # the quality filter shows content, style and output
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_path", Path(self.model_path))
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}.")
        if self.max_images_per_prompt < 1 or self.tensor_parallel_size < 1:
            raise ConfigError("max_images_per_prompt and tensor_parallel_size must be >= 1.")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ConfigError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}.")


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ImportError(f"{VLLM_INSTALL_HINT} ({e}).") from e
    return vllm


def load_vllm(config: VLLMConfig) -> VLLMVLM:
    """Start vLLM's offline engine on the local model folder (greedy decoding)."""
    check_local_weights(config.model_path, "vision-language model")
    vllm = _import_vllm()
    logger.info("loading VLM into vLLM from %s", config.model_path)
    llm = vllm.LLM(
        model=str(config.model_path), tensor_parallel_size=config.tensor_parallel_size,
        gpu_memory_utilization=config.gpu_memory_utilization, max_model_len=config.max_model_len,
        limit_mm_per_prompt={"image": config.max_images_per_prompt},
    )
    sampling = vllm.SamplingParams(temperature=0.0, max_tokens=config.max_new_tokens)
    return VLLMVLM(llm, sampling, config.max_images_per_prompt)


class VLLMVLM:
    """Wraps an engine with vLLM's ``chat(conversations, sampling_params)``; ``load_vllm`` builds it."""

    def __init__(self, llm: Any, sampling_params: Any, max_images_per_prompt: int) -> None:
        self._llm = llm
        self._sampling = sampling_params
        self._max_images = max_images_per_prompt

    def generate(self, requests: Sequence[VLMRequest]) -> list[str]:
        from ..data.images import open_image

        if not requests:
            return []
        too_many = [len(r.images) for r in requests if len(r.images) > self._max_images]
        if too_many:
            raise ConfigError(f"a request has {max(too_many)} images but vLLM was started with "
                              f"max_images_per_prompt={self._max_images}; raise it.")
        conversations = [
            [{"role": "user", "content": [*({"type": "image_pil", "image_pil": open_image(p)} for p in r.images),
                                          {"type": "text", "text": r.prompt}]}]
            for r in requests
        ]
        outputs = self._llm.chat(conversations, self._sampling, use_tqdm=False)
        if len(outputs) != len(requests):
            raise RuntimeError(f"vLLM returned {len(outputs)} answers for {len(requests)} requests.")
        return [o.outputs[0].text for o in outputs]
