import csv
import json
import shutil

import pytest
import torch
from PIL import Image

from tests.curation.helpers import save_image, write_jsonl
from training.data.errors import InputError, MissingFileError
from training.evaluate.encoders import AestheticPredictor, SiglipMeanPoolEncoder
from training.evaluate.suite import discover_triples, score_triples, summarise, write_suite_outputs


def _triple_folder(root, n=3):
    for i in range(n):
        save_image(root / "content" / f"t{i}.png", seed=100 + i)
        save_image(root / "style" / f"t{i}.jpg", seed=200 + i)
    # t0's output is its style image, t1's output is its content image, t2 is unrelated.
    (root / "output").mkdir()
    shutil.copy(root / "style" / "t0.jpg", root / "output" / "t0.jpg")
    shutil.copy(root / "content" / "t1.png", root / "output" / "t1.png")
    save_image(root / "output" / "t2.png", seed=300)
    return root


def test_suite_scores_write_csv_plots_and_self_contained_html(tmp_path, tiny_siglip, tiny_clip):
    triples = discover_triples(_triple_folder(tmp_path / "triples"))
    assert [t.id for t in triples] == ["t0", "t1", "t2"]
    encoder = SiglipMeanPoolEncoder(tiny_siglip)
    mlp = torch.nn.Sequential(torch.nn.Linear(16, 1))
    scores = score_triples(triples, encoder, encoder, AestheticPredictor(tiny_clip, mlp), batch_size=2)
    by_id = {s.id: s for s in scores}
    assert by_id["t0"].style_similarity == pytest.approx(1.0, abs=1e-5)
    assert by_id["t1"].content_fidelity == pytest.approx(1.0, abs=1e-5)
    assert by_id["t1"].style_similarity == pytest.approx(by_id["t1"].baseline_style_similarity, abs=1e-5)
    assert by_id["t0"].content_fidelity < 0.999
    assert all(s.aesthetic is not None for s in scores)

    outputs = write_suite_outputs(triples, scores, tmp_path / "out")
    with open(outputs["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ["t0", "t1", "t2"]
    assert float(rows[0]["style_similarity"]) == pytest.approx(by_id["t0"].style_similarity)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["num_triples"] == 3
    assert summary["metrics"]["content_fidelity"]["max"] == pytest.approx(1.0, abs=1e-5)
    for name in ("means.png", "style_vs_content.png"):
        with Image.open(tmp_path / "out" / "plots" / name) as plot:
            assert plot.size == (640, 420) and len(plot.getcolors(maxcolors=1 << 20)) > 3  # something was drawn
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/jpeg;base64,") == 9  # 3 thumbnails per triple
    assert html.count("data:image/png;base64,") == 2
    assert "src='/" not in html and "http" not in html  # nothing outside the file


def test_summary_skips_missing_aesthetics():
    from training.evaluate.suite import TripleScores

    summary = summarise([TripleScores("a", 0.5, 0.1, 0.9, None), TripleScores("b", 0.7, 0.2, 0.7, None)])
    assert "aesthetic" not in summary
    assert summary["style_similarity"]["mean"] == pytest.approx(0.6)
    assert summary["content_fidelity"]["std"] == pytest.approx(0.1)


def test_triple_discovery_errors(tmp_path):
    root = tmp_path / "t"
    save_image(root / "content" / "a.png", 1)
    save_image(root / "output" / "a.png", 2)
    (root / "style").mkdir()
    with pytest.raises(InputError, match=r"output image a.png has no matching file named 'a' in .*style"):
        discover_triples(root)
    with pytest.raises(MissingFileError, match="needs subfolders"):
        discover_triples(tmp_path / "t" / "content")
    with pytest.raises(MissingFileError, match="Triples not found"):
        discover_triples(tmp_path / "nothing")
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"id": "x", "content_image": "c.png", "style_image": "s.png"}])
    with pytest.raises(InputError, match="no field 'output_image'"):
        discover_triples(manifest)
