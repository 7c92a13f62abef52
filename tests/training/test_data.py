"""Manifest validation, aspect buckets, the P x K sampler and the resumable cache."""

import json
import os

import numpy as np
import pytest
import torch

from training.data.buckets import KONTEXT_RESOLUTIONS, BucketBatchSampler, assign_bucket, bucket_table
from training.data.cache import CacheReader, cache_style_hidden
from training.data.images import load_batch, save_image
from training.data.errors import ManifestError, MissingFileError
from training.data.triplets import read_triplets
from training.data.samplers import PKSampler
from training.demo.backbones import gabor_siglip

GOOD = {"content": "c.png", "style": "s.png", "target": "t.png", "style_label": "ink", "prompt": "a cat"}


@pytest.fixture
def folder(tmp_path):
    for name in ("c.png", "s.png", "t.png"):
        save_image(np.random.default_rng(0).uniform(size=(8, 8, 3)), tmp_path / name)
    return tmp_path


def write(folder, records):
    path = folder / "m.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


@pytest.mark.parametrize("bad, line_field, expected", [
    ("{not json", "m.jsonl, line 2", "not valid JSON"),
    ("[1, 2]", "m.jsonl, line 2", "expected a JSON object"),
    ({**GOOD, "traget": "t.png"}, "m.jsonl, line 2, field 'traget'", "unknown field"),
    ({k: v for k, v in GOOD.items() if k != "prompt"}, "m.jsonl, line 2, field 'prompt'", "missing"),
    ({**GOOD, "style_label": 3}, "m.jsonl, line 2, field 'style_label'", "expected a string, got 3"),
    ({**GOOD, "content": "/abs/c.png"}, "m.jsonl, line 2, field 'content'", "relative"),
    ({**GOOD, "target": "t.txt"}, "m.jsonl, line 2, field 'target'", "expected an image file"),
    ({**GOOD, "style": "missing.png"}, "m.jsonl, line 2, field 'style'", "does not exist"),
    ({**GOOD, "style_label": " "}, "m.jsonl, line 2, field 'style_label'", "non-empty"),
])
def test_bad_manifest_lines_name_line_field_and_expectation(folder, bad, line_field, expected):
    with pytest.raises(ManifestError) as err:
        read_triplets(write(folder, [GOOD, bad]))
    assert line_field in str(err.value) and expected in str(err.value)


def test_good_manifest_resolves_paths_relative_to_the_file(folder):
    (t,) = read_triplets(write(folder, [GOOD, ""]))
    assert t.content == folder / "c.png" and t.style_prompt == "ink" and t.line == 1
    with pytest.raises(MissingFileError, match="nope.jsonl"):
        read_triplets(folder / "nope.jsonl")
    with pytest.raises(ManifestError, match="no triplets"):
        read_triplets(write(folder, [""]))


def test_unreadable_image_is_named(folder):
    (folder / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png cannot be read"):
        load_batch([folder / "broken.png"], 8, 8)


def test_bucket_table_and_assignment():
    assert (1024, 1024) in KONTEXT_RESOLUTIONS and len(KONTEXT_RESOLUTIONS) == 17
    table = bucket_table(512)
    assert all(w % 16 == 0 and h % 16 == 0 for w, h in table) and (512, 512) in table
    assert assign_bucket(1920, 1080, bucket_table(1024)) == (1392, 752)  # landscape, not square
    assert assign_bucket(600, 1400, bucket_table(1024))[0] < 1024


def test_bucket_batches_share_a_bucket_and_are_reproducible():
    buckets = [(64, 64)] * 7 + [(80, 48)] * 5
    sampler = BucketBatchSampler(buckets, 2, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 + 2
    assert all(len({buckets[i] for i in b}) == 1 for b in batches)
    assert batches == list(BucketBatchSampler(buckets, 2, seed=3))
    sampler.set_epoch(1)
    assert list(sampler) != batches
    with pytest.raises(ValueError, match="no bucket holds a full batch"):
        BucketBatchSampler(buckets, 8)


def test_pk_sampler_guarantees_positives():
    labels = np.repeat(np.arange(20), [1, 2, 3, 4, 5] * 4)  # some styles have fewer than K images
    sampler = PKSampler(labels, styles_per_batch=6, images_per_style=4, seed=0)
    for _ in range(50):
        a, b = sampler.pair()
        assert len(a) == len(b) == 24
        assert set(labels[a]) == set(labels[b])  # every anchor has a positive in the other batch
        batch = sampler.batch()
        assert all((labels[batch] == labels[i]).sum() >= 2 for i in batch)  # SupCon positives too
    with pytest.raises(ValueError, match="at least 30 styles"):
        PKSampler(labels, 30, 2)


def test_cache_resumes_and_refuses_other_settings(tiny, tmp_path):
    triplets = read_triplets(tiny["manifest"])
    siglip = gabor_siglip(width=16, image_size=32)
    out = cache_style_hidden(triplets, siglip, tmp_path / "c", shard_size=10, batch_size=8)
    shards = sorted(out.glob("shard-*.safetensors"))
    assert len(shards) == 3
    reader = CacheReader(out, kind="style_hidden")
    assert reader.get(0, "hidden").shape == (3, 16, 16)
    assert torch.equal(reader.get(5, "hidden"), CacheReader(tiny["stage1_cache"]).get(5, "hidden"))
    mtimes = {p: p.stat().st_mtime_ns for p in shards}
    os.remove(shards[1])
    with pytest.raises(ValueError, match="missing or incomplete"):
        CacheReader(out)
    cache_style_hidden(triplets, siglip, out, shard_size=10, batch_size=8)  # resume: redo shard 1 only
    assert shards[1].is_file()
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in (shards[0], shards[2]))
    with pytest.raises(ValueError, match="other data or settings"):
        cache_style_hidden(triplets[:3], siglip, out, shard_size=10)
    with pytest.raises(ValueError, match="not a feature cache"):
        CacheReader(tmp_path)


def test_cache_command_line_stage1(tiny, tmp_path):
    from training.stage1.cache import main

    tiny["siglip"].model.save_pretrained(tmp_path / "siglip")
    main([f"--manifest={tiny['manifest']}", f"--siglip={tmp_path / 'siglip'}", f"--out={tmp_path / 'c'}",
          "--dtype=float32"])
    reader = CacheReader(tmp_path / "c", kind="style_hidden")
    reference = CacheReader(tiny["stage1_cache"]).get(3, "hidden").float()
    assert torch.allclose(reader.get(3, "hidden"), reference, atol=1e-2)
    with pytest.raises(ValueError, match="unknown option 'manfest'. Did you mean manifest"):
        main(["--manfest=x"])


def test_stage2_cache_builds_the_projector_from_its_stored_layer_order(tiny, tmp_path):
    """A stage-1 file whose projector reads layers (-20, -11, -2): SigLIP is tapped there, in that order."""
    from styleexpert_core.config import ProjectorConfig
    from styleexpert_core.projector import StyleProjector
    from training.checkpoints import save_projector
    from training.stage2.cache import projected_style

    siglip = tiny["siglip"]
    siglip.model.save_pretrained(tmp_path / "siglip")
    torch.manual_seed(1)
    pconfig = ProjectorConfig(layers=(-20, -11, -2), num_tokens=16, width=16, style_tokens=2, out_dim=4)
    projector = StyleProjector(pconfig).eval()
    save_projector(tmp_path / "projector.safetensors", projector, pconfig)

    style = projected_style(str(tmp_path / "siglip"), str(tmp_path / "projector.safetensors"))
    assert style.siglip.layers == (-20, -11, -2) and style.projector.config == pconfig
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        hidden = siglip.model(pixel_values=(images - 0.5) / 0.5, output_hidden_states=True).hidden_states
        expected = projector(tuple(hidden))  # the projector picks its own layers, in its own order
    torch.testing.assert_close(style.encode_style_latent(images), expected)


def test_atomic_save_replaces_whole_files_and_cleans_up_on_failure(tmp_path):
    from training.data.files import atomic_save, read_jsonl, write_jsonl

    path = tmp_path / "sub" / "rows.jsonl"
    assert write_jsonl(path, [{"a": 1}, {"b": "é"}]) == 2
    assert read_jsonl(path) == [(1, {"a": 1}), (2, {"b": "é"})]

    def fail(tmp):
        tmp.write_text("half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_save(path, fail)
    assert read_jsonl(path) == [(1, {"a": 1}), (2, {"b": "é"})]  # the old file is untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["rows.jsonl"]  # no temporary file left
