"""Caching at scale: caches sharded over processes, memory-mapped bf16 text embeddings."""

import dataclasses
import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import torch

from training.data.backbones import ProjectedStyle
from training.data.cache import CacheReader, Part, TripletCacheSpec, cache_triplets
from training.data.mapped import map_safetensors
from training.data.triplets import read_triplets
from training.demo.backbones import ByteText, PatchVAE
from training.stage2.data import TripletCache

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:  # a free port, so parallel sessions do not collide
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def all_tensors(cache_dir: Path) -> dict[str, torch.Tensor]:
    out = {}
    for path in sorted(cache_dir.glob("*.safetensors")):
        out.update({f"{path.name}:{k}": v for k, v in map_safetensors(path)[0].items()})
    return out


def mapped_from(tensor: torch.Tensor, path: Path) -> bool:
    """Whether ``tensor``'s memory lies in a mapping of ``path`` in this process (Linux /proc/self/maps)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(path)):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= tensor.data_ptr() < hi:
                return True
    return False


def test_two_process_sharded_cache_equals_the_one_process_cache(tiny, tmp_path):
    from training.stage1.cache import main

    tiny["siglip"].model.save_pretrained(tmp_path / "siglip")
    args = [f"--manifest={tiny['manifest']}", f"--siglip={tmp_path / 'siglip'}", "--dtype=float32",
            "--shard_size=10", "--batch_size=4", "--device=cpu"]
    main([*args, f"--out={tmp_path / 'one'}"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "training.stage1.cache", *args, f"--out={tmp_path / 'two'}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0 of 2 writes shard-* [0, 2]" in proc.stderr  # the work was split, not done twice
    assert "rank 1 of 2 writes shard-* [1]" in proc.stderr

    one, two = all_tensors(tmp_path / "one"), all_tensors(tmp_path / "two")
    assert len(one) == len(CacheReader(tmp_path / "one")) == 24 and sorted(one) == sorted(two)  # 3 shards
    assert all(torch.equal(one[k], two[k]) for k in one)
    index = json.loads((tmp_path / "two" / "index.json").read_text())
    assert index == json.loads((tmp_path / "one" / "index.json").read_text())


def test_text_embeddings_are_memory_mapped_bf16_rows_and_shard_over_ranks(tiny, tmp_path):
    triplets = [dataclasses.replace(t, prompt=f"prompt {i % 5}") for i, t in enumerate(read_triplets(tiny["manifest"])[:10])]
    style = ProjectedStyle(tiny["siglip"], torch.nn.Identity())
    style.encode_style_latent = lambda images: torch.zeros(len(images), 4)  # the router input is not under test
    text = ByteText(16, 16, 4)
    kw = dict(spec=TripletCacheSpec(bucket_side=32), dtype=torch.bfloat16, shard_size=4, batch_size=2,
              text_shard_size=2)
    one = cache_triplets(triplets, PatchVAE(), text, style, tmp_path / "one", **kw)
    # two "ranks" one after the other: rank 1 writes its shards, rank 0 its own and then the index
    cache_triplets(triplets, PatchVAE(), text, style, tmp_path / "two", part=Part(1, 2), **kw)
    assert not (tmp_path / "two" / "index.json").exists()
    cache_triplets(triplets, PatchVAE(), text, style, tmp_path / "two", part=Part(0, 2), **kw)
    a, b = all_tensors(one), all_tensors(tmp_path / "two")
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)

    data = TripletCache(str(one))
    prompts = data.reader.index["prompts"]
    assert len(prompts) > 2 and len(list(one.glob("text-*.safetensors"))) == (len(prompts) + 1) // 2
    rows = data.text_seq.shards
    assert all(t.dtype == torch.bfloat16 for t in rows)
    assert all(mapped_from(t, one / f"text-{s:05d}.safetensors") for s, t in enumerate(rows))  # not in RAM
    expected = text.encode_text(prompts)
    assert torch.equal(data.text_seq[torch.arange(len(prompts))], expected.seq.bfloat16())
    assert torch.equal(data.pooled[torch.arange(len(prompts))], expected.pooled.bfloat16())
    batch = data.collate([data[0], data[1]])
    assert batch.text_seq.dtype == torch.float32  # a batch is a small fp32 copy of its rows
    assert torch.equal(batch.text_seq[1], expected.seq[data.reader.items[1]["prompt"]].bfloat16().float())
    shipped = pickle.dumps(data)  # what spawn / forkserver DataLoader workers receive: no tensor data
    assert len(shipped) < 20_000 and torch.equal(pickle.loads(shipped).collate([data[1]]).text_seq[0], batch.text_seq[1])
