import json
import shutil
import sys

import pytest
import torch
from torch import nn

from tests.curation.helpers import save_image, write_jsonl
from training.data.errors import MissingWeightsError
from training.evaluate.cli import main as evaluate_main
from training.evaluate.encoders import SiglipMeanPoolEncoder
from training.evaluate.paper_metrics import (DREAMSIM_FILES, DreamSimEncoder, PaperMetrics, load_clip, load_dino,
                                             load_dreamsim)
from training.evaluate.suite import discover_triples, paper_scores, score_triples, write_suite_outputs


class PixelEmbedder(nn.Module):
    """Stands in for dreamsim's PerceptualModel (its weights cannot be fetched here): a fixed random
    projection of the pixels, exposing the same ``embed`` the real model has."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3 * 8 * 8, 12)
        self.seen = []

    def embed(self, pixels):
        self.seen.append(pixels)
        return self.proj(nn.functional.interpolate(pixels, size=(8, 8), mode="area").flatten(1))


def _triples(tmp_path):
    rows = []
    for i in range(3):
        save_image(tmp_path / f"c{i}.png", seed=10 + i)
        save_image(tmp_path / f"s{i}.png", seed=20 + i)
        rows.append({"id": f"t{i}", "content_image": f"c{i}.png", "style_image": f"s{i}.png",
                     "output_image": f"o{i}.png", "prompt": f"w{i} w{i + 5} w{i + 9}"})
    shutil.copy(tmp_path / "s0.png", tmp_path / "o0.png")  # t0's output is its style image
    shutil.copy(tmp_path / "c1.png", tmp_path / "o1.png")  # t1's output is its content image
    save_image(tmp_path / "o2.png", seed=99)
    return write_jsonl(tmp_path / "triples.jsonl", rows)


def test_paper_metrics_on_tiny_models_loaded_from_disk(tmp_path, tiny_dino_dir, tiny_clip_dir):
    triples = discover_triples(_triples(tmp_path))
    clip = load_clip(tiny_clip_dir)
    dreamsim = PixelEmbedder()
    paper = PaperMetrics(load_dino(tiny_dino_dir), clip, DreamSimEncoder(dreamsim, size=16))
    scores = {t.id: s for t, s in zip(triples, paper_scores(triples, paper, batch_size=2))}
    assert list(scores["t0"]) == ["dino", "clip_image", "clip_text", "dreamsim"]
    assert scores["t0"]["clip_image"] == pytest.approx(1.0, abs=1e-5)  # output == style image
    assert scores["t1"]["dino"] == pytest.approx(1.0, abs=1e-5)  # output == content image
    assert scores["t1"]["dreamsim"] == pytest.approx(0.0, abs=1e-5)
    assert scores["t0"]["dino"] < 0.999 and scores["t2"]["clip_image"] < 0.999 and scores["t0"]["dreamsim"] > 1e-3
    assert float(dreamsim.seen[0].min()) >= 0.0 and float(dreamsim.seen[0].max()) <= 1.0  # DreamSim takes [0, 1]
    # clip_text by hand: the model's own projected image and text features.
    from PIL import Image

    tokens = clip.tokenizer([triples[2].prompt], return_tensors="pt")
    with torch.no_grad():
        text = clip.model.get_text_features(**tokens)
        image = clip.model.get_image_features(pixel_values=clip.preprocess([Image.open(tmp_path / "o2.png")]))
    text = text if isinstance(text, torch.Tensor) else text.pooler_output
    image = image if isinstance(image, torch.Tensor) else image.pooler_output
    assert scores["t2"]["clip_text"] == pytest.approx(float(nn.functional.cosine_similarity(image, text)), abs=1e-5)


def test_clip_text_needs_a_prompt_for_every_triple(tmp_path, tiny_clip_dir, tiny_siglip):
    triples = discover_triples(_triples(tmp_path))
    triples[1] = triples[1].__class__(**{**triples[1].__dict__, "prompt": None})
    encoder = SiglipMeanPoolEncoder(tiny_siglip)
    scores = score_triples(triples, encoder, encoder, paper=PaperMetrics(clip=load_clip(tiny_clip_dir)))
    assert list(scores[0].paper) == ["clip_image"]
    outputs = write_suite_outputs(triples, scores, tmp_path / "out")
    html = (tmp_path / "out" / "report.html").read_text()
    assert "clip_image" in html and "CLIP image cosine, output vs style image" in html and "clip_text" not in html
    assert "clip_image" in open(outputs["csv"]).readline()


def test_suite_cli_adds_the_paper_metrics_to_the_report(tmp_path, capsys, tiny_siglip_dir, tiny_dino_dir,
                                                         tiny_clip_dir):
    manifest = _triples(tmp_path)
    code = evaluate_main(["suite", "--triples", str(manifest), "--style-encoder", "siglip", "--style-model",
                          str(tiny_siglip_dir), "--content-encoder", "siglip", "--content-model", str(tiny_siglip_dir),
                          "--dino-model", str(tiny_dino_dir), "--clip-model", str(tiny_clip_dir),
                          "--out-dir", str(tmp_path / "report")])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"dino", "clip_image", "clip_text"} <= set(summary)
    metrics = json.loads((tmp_path / "report" / "summary.json").read_text())["metrics"]
    assert metrics["clip_image"]["max"] == pytest.approx(1.0, abs=1e-5) and metrics["dino"]["n"] == 3
    html = (tmp_path / "report" / "report.html").read_text()
    for name in ("dino", "clip_image", "clip_text", "DINO CLS cosine, output vs content image"):
        assert name in html


def test_dreamsim_loader_refuses_to_download_and_says_how_to_install(tmp_path, monkeypatch):
    with pytest.raises(MissingWeightsError, match="missing dino_vitb16_pretrain.pth, .*clip_vitb16_lora"):
        load_dreamsim(tmp_path)
    for name in DREAMSIM_FILES:
        (tmp_path / name).touch()
    monkeypatch.setitem(sys.modules, "dreamsim", None)
    with pytest.raises(ImportError, match="pip install dreamsim"):
        load_dreamsim(tmp_path)
    with pytest.raises(MissingWeightsError, match="DINO model weights not found"):
        load_dino(tmp_path / "nope")


def test_vlm_scores_from_the_curate_filter_report_join_the_suite(tmp_path, capsys, tiny_siglip_dir):
    from training.curate.executor import LocalExecutor
    from training.curate.vlm import QualityThresholds
    from training.curate.vlm_steps import filter_manifest
    from training.data.manifest import read_manifest
    from tests.curation.test_vlm import FakeVLM

    manifest = _triples(tmp_path)
    vlm = FakeVLM({"o0.png": '{"stylisation": 9, "layout": 2, "identity": 3}',
                   "o1.png": '{"stylisation": 1, "layout": 10, "identity": 10}',
                   "o2.png": "stylisation: 5\nlayout: 5\nidentity: 4/5"})
    report = tmp_path / "vlm.jsonl"
    filter_manifest(read_manifest(manifest), lambda: vlm, QualityThresholds(), report, tmp_path / "kept.jsonl",
                    LocalExecutor(), batch_size=3)
    args = ["suite", "--triples", str(manifest), "--style-encoder", "siglip", "--style-model", str(tiny_siglip_dir),
            "--content-encoder", "siglip", "--content-model", str(tiny_siglip_dir), "--vlm-scores", str(report),
            "--out-dir", str(tmp_path / "report")]
    assert evaluate_main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["vlm_stylisation"] == pytest.approx(5.0) and summary["vlm_identity"] == pytest.approx(7.0)
    html = (tmp_path / "report" / "report.html").read_text()
    assert "vlm_layout" in html and "VLM judge (curate filter)" in html
    write_jsonl(report, [{"id": "t0", "scores": {"stylisation": 1, "layout": 1, "identity": 1}}])
    assert evaluate_main(args) == 2
    assert "no VLM scores for 2 triple(s)" in capsys.readouterr().err
