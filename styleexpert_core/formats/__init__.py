"""Checkpoint files: the native format, the official release, and baked LoRAs.

    checkpoint.py   StyleExpertCheckpoint, what every format reads into
    files.py        safe reading (pickles refused), atomic writing, format detection
    native.py       the self-describing native safetensors file
    official.py     the official release (MoE file + projector file)
    load.py         load_checkpoint: any supported file, read once
    baked_lora.py   one folded style as a plain Flux LoRA

Every tensor key is accounted for; anything unknown, missing or mis-shaped is an error that
names the file, the key and the expected format.
"""

from .baked_lora import bake_style, save_baked_lora
from .checkpoint import StyleExpertCheckpoint
from .files import detect_format, read_safetensors, read_tensor_file
from .load import load_checkpoint
from .native import load_native, save_native
from .official import load_official

__all__ = ["StyleExpertCheckpoint", "bake_style", "detect_format", "load_checkpoint", "load_native", "load_official",
           "read_safetensors", "read_tensor_file", "save_baked_lora", "save_native"]
