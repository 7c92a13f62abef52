"""Test-only ComfyUI node pack: stand-ins for models that cannot be loaded at a tiny size.

Loaded by the integration harness into a throwaway ComfyUI server (symlinked into its
custom_nodes/). Never shipped: node ids start with `StyleExpertTest`.
"""

from .testing_nodes import comfy_entrypoint

__all__ = ["comfy_entrypoint"]
