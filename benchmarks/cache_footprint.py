"""Caching at scale: disk, RAM and time per 100k images for each caching choice, at real shapes.

    python -m benchmarks.cache_footprint            # prints a JSON report (about a minute on 2 CPU cores)

What is measured and what is computed:
* bytes per item: *measured*. The real cache writer (``training.data.cache.write_sharded``) writes
  shards of tensors at the real shapes (SigLIP so400m-patch14-384: 3 layers x 729 tokens x 1152;
  FLUX.1 VAE latents 16 x 128 x 128 at 1024^2; a 3072-d style latent; T5-XXL 128 x 4096 and CLIP
  768 per prompt), and the file sizes are divided by the item count (headers included).
* FLOPs per image of the frozen encoders: *computed* by ``torch.utils.flop_counter`` on meta-device
  models with the real configs (no weights). Seconds on a GPU are then FLOPs / (989 TFLOP/s bf16
  dense H100 x 40 % utilisation): an estimate, not a measurement (no GPU here).
* seconds per image on this CPU: *measured* for the parts a CPU does whatever the GPU: decoding and
  resizing a 1024^2 JPEG to 384^2 (what each stage-1 step does per image in live-encoder mode,
  in DataLoader workers), and reading one cached stage-1 item back through the memory map as fp32
  (page cache warm: the copy cost, not the disk).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from training.data.cache import CacheReader, write_sharded
from training.data.images import load_square

N_ITEMS = 16
H100_BF16 = 989e12 * 0.4  # dense bf16 FLOP/s x utilisation
PER = 100_000
GB = 1e9


def bytes_per_item(fields: dict[str, tuple[tuple[int, ...], torch.dtype]], texts: dict | None = None) -> dict:
    """Write N_ITEMS items (and prompts) at these shapes with the real writer; measured bytes per item / prompt."""
    with tempfile.TemporaryDirectory() as tmp:
        items = [{"i": i} for i in range(N_ITEMS)]
        encode = lambda batch: {f: torch.zeros(len(batch), *s, dtype=d) for f, (s, d) in fields.items()}  # noqa: E731
        text_encode = None if texts is None else (
            [f"p{i}" for i in range(N_ITEMS)],
            lambda names: {f: torch.zeros(len(names), *s, dtype=d) for f, (s, d) in texts.items()})
        write_sharded(tmp, "probe", items, encode, shard_size=N_ITEMS, batch_size=4, fp="probe", dtype=torch.bfloat16,
                      fp32_fields=tuple(f for f, (_, d) in {**fields, **(texts or {})}.items() if d == torch.float32),
                      texts=text_encode, text_shard_size=N_ITEMS)
        out = {"item": (Path(tmp) / "shard-00000.safetensors").stat().st_size / N_ITEMS}
        if texts is not None:
            out["prompt"] = (Path(tmp) / "text-00000.safetensors").stat().st_size / N_ITEMS
        return out


def encoder_flops() -> dict[str, float]:
    """Forward FLOPs per image / prompt of the frozen encoders at real configs (meta device, no weights)."""
    from diffusers import AutoencoderKL
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import SiglipVisionConfig, SiglipVisionModel, T5Config, T5EncoderModel

    def count(model, **inputs) -> float:
        with FlopCounterMode(display=False) as counter:
            model(**inputs)
        return counter.get_total_flops()

    with torch.device("meta"):
        siglip = SiglipVisionModel(SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                                      num_attention_heads=16, image_size=384, patch_size=14))
        vae = AutoencoderKL(down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                            block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=16,
                            use_quant_conv=False, use_post_quant_conv=False)
        t5 = T5EncoderModel(T5Config(d_model=4096, d_ff=10240, d_kv=64, num_layers=24, num_heads=64,
                                     feed_forward_proj="gated-gelu"))
        return {"siglip_so400m_384": count(siglip, pixel_values=torch.zeros(1, 3, 384, 384)),
                "flux_vae_encode_1024": count(vae.encoder, sample=torch.zeros(1, 3, 1024, 1024)),
                "t5_xxl_128_tokens": count(t5, input_ids=torch.zeros(1, 128, dtype=torch.long))}


def cpu_seconds() -> dict[str, float]:
    """Per image on this CPU (one thread): JPEG decode + resize to 384^2; a cached item read back as fp32."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        from PIL import Image

        yy, xx = np.mgrid[0:1024, 0:1024]
        picture = np.stack([np.sin(xx / 37.0), np.cos(yy / 23.0), np.sin((xx + yy) / 51.0)], -1) * 127 + 128
        path = Path(tmp) / "image.jpg"
        Image.fromarray(picture.astype(np.uint8)).save(path, quality=90)
        start = time.perf_counter()
        for _ in range(10):
            load_square(path, 384)
        decode = (time.perf_counter() - start) / 10
        write_sharded(tmp, "probe", [{"i": i} for i in range(N_ITEMS)],
                      lambda b: {"hidden": torch.randn(len(b), 3, 729, 1152)}, shard_size=N_ITEMS, batch_size=4,
                      fp="probe", dtype=torch.float16)
        reader = CacheReader(tmp)
        order = np.random.default_rng(0).permutation(N_ITEMS)
        start = time.perf_counter()
        for i in order:
            reader.get(int(i), "hidden").float()
        read = (time.perf_counter() - start) / N_ITEMS
    return {"jpeg_decode_resize_384": decode, "cached_stage1_item_to_fp32": read}


def main() -> None:
    stage1 = bytes_per_item({"hidden": ((3, 729, 1152), torch.float16)}, texts={"style_text": ((1152,), torch.float32)})
    stage2 = bytes_per_item({"target": ((16, 128, 128), torch.bfloat16), "content": ((16, 128, 128), torch.bfloat16),
                             "style_latent": ((3072,), torch.float32)},
                            texts={"seq": ((128, 4096), torch.bfloat16), "pooled": ((768,), torch.bfloat16)})
    flops = encoder_flops()
    fp32_text_in_ram = 128 * 4096 * 4 + 768 * 4  # version 1: every prompt's T5 + CLIP rows as fp32, per process
    report = {
        "bytes_per_item": {"stage1": stage1, "stage2_1024": stage2},
        "per_100k": {
            "stage1_feature_cache_disk_GB": stage1["item"] * PER / GB,
            "stage2_cache_disk_GB (latents 1024^2 + 100k prompts)": (stage2["item"] + stage2["prompt"]) * PER / GB,
            "stage2_text_RAM_per_process_GB before (fp32, loaded)": fp32_text_in_ram * PER / GB,
            "stage2_text_disk_GB now (bf16, memory-mapped, shared page cache)": stage2["prompt"] * PER / GB,
        },
        "tflop_per_item": {k: v / 1e12 for k, v in flops.items()},
        "h100_seconds_per_100k_estimated": {k: v * PER / H100_BF16 for k, v in flops.items()},
        "cpu_seconds_per_image_measured": cpu_seconds(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
