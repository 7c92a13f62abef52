"""Choosing and loading a vision-language model backend by name.

``VLMLoader`` is a small picklable recipe: executors ship it to each worker (each Ray actor), and
the worker loads the model once by calling it. Backend modules are imported only when selected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.errors import ConfigError
from .vlm import VisionLanguageModel

BACKENDS = ("transformers", "vllm")


@dataclass(frozen=True)
class VLMLoader:
    backend: str
    model_path: Path
    device: str = "cpu"  # transformers only; vLLM places the model itself
    max_new_tokens: int = 128
    tensor_parallel_size: int = 1  # vLLM only

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown VLM backend {self.backend!r}; choose one of {', '.join(BACKENDS)}.")

    def __call__(self) -> VisionLanguageModel:
        if self.backend == "vllm":
            from .vlm_vllm import VLLMConfig, load_vllm

            return load_vllm(VLLMConfig(self.model_path, max_new_tokens=self.max_new_tokens,
                                      tensor_parallel_size=self.tensor_parallel_size))
        from .vlm_transformers import TransformersVLM, TransformersVLMConfig

        return TransformersVLM(TransformersVLMConfig(self.model_path, device=self.device,
                                                     max_new_tokens=self.max_new_tokens))
