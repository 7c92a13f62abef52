import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from styleexpert_core.metrics import retrieval_metrics
from tests.curation.helpers import read_jsonl, save_image, write_jsonl
from training.curate.cli import main as curate_main
from training.data.embeddings import save_embeddings
from training.evaluate.cli import main as evaluate_main

REPO = Path(__file__).resolve().parents[2]


def _run_module(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def _summary(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # the final result is the only stdout output
    return json.loads(out[0])


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_help_explains_each_step():
    curate = _run_module("training.curate", "--help")
    assert curate.returncode == 0
    for step in ("select-references", "dedup", "balance", "pair-prompts", "caption", "filter"):
        assert step in curate.stdout
    evaluate = _run_module("training.evaluate", "retrieval", "--help")
    assert evaluate.returncode == 0 and "Recall@k" in evaluate.stdout


def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a"}\n{"id": "b",}\n')
    np.save(tmp_path / "e.npy", np.ones((2, 3), dtype=np.float32))
    result = _run_module("training.curate", "dedup", "--manifest", str(manifest), "--embeddings",
                         str(tmp_path / "e.npy"), "--out", str(tmp_path / "o.jsonl"),
                         "--report", str(tmp_path / "r.jsonl"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {manifest}, line 2: not valid JSON "
                                                  "(Expecting property name enclosed in double quotes at column 12). "
                                                  "Each line must be one complete JSON object."]
    assert result.stdout == ""


def _dataset(tmp_path, n_styles=4, per_style=6, dim=8):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(n_styles, dim))
    rows, vectors = [], []
    for s in range(n_styles):
        for k in range(per_style):
            rows.append({"id": f"s{s}_{k}", "image": f"img/s{s}_{k}.png", "style": f"style{s}", "content": f"c{k % 3}"})
            vectors.append(centres[s] + 0.3 * rng.normal(size=dim))
    manifest = write_jsonl(tmp_path / "data" / "manifest.jsonl", rows)
    return manifest, np.array(vectors, dtype=np.float32), rows


def test_dedup_cli_end_to_end(tmp_path, capsys):
    from PIL import Image

    manifest, vectors, rows = _dataset(tmp_path)
    folder = manifest.parent
    for k, row in enumerate(rows):
        save_image(folder / row["image"], seed=k)
    (folder / "img/exact.png").write_bytes((folder / "img/s3_0.png").read_bytes())  # a byte copy
    Image.open(folder / "img/s3_1.png").save(folder / "img/near.jpg", quality=90)  # a re-encode
    for k, name in enumerate(("x", "y")):
        save_image(folder / f"img/{name}.png", seed=100 + k)
    rng = np.random.default_rng(7)
    vectors = np.concatenate([vectors, vectors[[2, 7]], rng.normal(size=(2, vectors.shape[1]))])
    rows += [{"id": "copy_a", "image": "img/x.png", "style": "style0", "content": "c9"},
             {"id": "copy_b", "image": "img/y.png", "style": "style1", "content": "c9"},
             {"id": "exact_c", "image": "img/exact.png", "style": "style3", "content": "c9"},
             {"id": "near_d", "image": "img/near.jpg", "style": "style3", "content": "c9"}]
    write_jsonl(manifest, rows)
    save_embeddings(tmp_path / "emb.safetensors", vectors[::-1], ids=[r["id"] for r in rows][::-1])
    args = ["dedup", "--manifest", str(manifest), "--embeddings", str(tmp_path / "emb.safetensors"),
            "--threshold", "0.999", "--clusters", "3", "--out", str(tmp_path / "kept.jsonl"),
            "--report", str(tmp_path / "dropped.jsonl")]
    assert curate_main(args) == 0
    assert _summary(capsys) == {"records": 28, "kept": 24, "dropped": 4, "exact": 1, "near": 1, "semantic": 2,
                                "out": str(tmp_path / "kept.jsonl")}
    dropped = read_jsonl(tmp_path / "dropped.jsonl")
    assert [(d["step"], d["id"], d["duplicate_of"]) for d in dropped] == [
        ("exact", "exact_c", "s3_0"), ("near", "near_d", "s3_1"), ("semantic", "copy_a", "s0_2"),
        ("semantic", "copy_b", "s1_1")]
    kept = read_jsonl(tmp_path / "kept.jsonl")
    assert kept[0]["image"] == "data/img/s0_0.png"  # rebased next to the output file
    assert curate_main([*args, "--no-image-hash"]) == 0  # semantic only: the hash-found copies stay
    assert _summary(capsys)["kept"] == 26
    assert curate_main([*args, "--phash-distance", "40"]) == 2
    assert "0..16 bits" in _error_line(capsys)


def test_select_references_and_balance_cli(tmp_path, capsys):
    manifest, vectors, rows = _dataset(tmp_path)
    np.save(tmp_path / "style.npy", vectors)
    out = tmp_path / "refs.jsonl"
    assert curate_main(["select-references", "--manifest", str(manifest), "--style-embeddings",
                        str(tmp_path / "style.npy"), "--out", str(out)]) == 0
    assert _summary(capsys)["with_reference"] == 24
    by_id = {r["id"]: r for r in rows}
    for row in read_jsonl(out):
        ref = by_id[row["reference_id"]]
        assert ref["style"] == row["style"] and ref["content"] != row["content"]
        assert row["reference_image"] == "data/" + ref["image"]

    assert curate_main(["balance", "--manifest", str(manifest), "--embeddings", str(tmp_path / "style.npy"),
                        "--levels", "8,2", "--resample-steps", "3", "--target", "10", "--label-field", "style",
                        "--out", str(tmp_path / "bal.jsonl"), "--report", str(tmp_path / "bal.json")]) == 0
    summary = _summary(capsys)
    assert summary["kept"] == 10 and len(read_jsonl(tmp_path / "bal.jsonl")) == 10
    report = json.loads((tmp_path / "bal.json").read_text())
    assert report["before"]["count"] == 24 and report["after"]["count"] == 10
    assert report["label_source"] == "field 'style'" and report["resample_steps"] == 3


def test_curate_cli_user_errors(tmp_path, capsys):
    manifest, vectors, _ = _dataset(tmp_path)
    np.save(tmp_path / "short.npy", vectors[:5])
    code = curate_main(["dedup", "--manifest", str(manifest), "--embeddings", str(tmp_path / "short.npy"),
                        "--out", str(tmp_path / "o.jsonl"), "--report", str(tmp_path / "r.jsonl")])
    assert code == 2 and "has 5 rows but" in _error_line(capsys)
    np.save(tmp_path / "full.npy", vectors)
    code = curate_main(["select-references", "--manifest", str(manifest), "--style-embeddings",
                        str(tmp_path / "full.npy"), "--style-field", "artist", "--out", str(tmp_path / "o.jsonl")])
    assert code == 2 and "has no field 'artist'" in _error_line(capsys)
    code = curate_main(["balance", "--manifest", str(manifest), "--embeddings", str(tmp_path / "full.npy"),
                        "--levels", "4,8", "--target", "5", "--out", str(tmp_path / "o.jsonl"),
                        "--report", str(tmp_path / "r.json")])
    assert code == 2 and "strictly decrease" in _error_line(capsys)
    code = curate_main(["caption", "--manifest", str(manifest), "--kind", "style", "--model-path",
                        str(tmp_path / "qwen-vl"), "--out", str(tmp_path / "c.jsonl")])
    assert code == 2 and f"weights not found at {tmp_path / 'qwen-vl'}" in _error_line(capsys)
    code = curate_main(["filter", "--manifest", str(manifest), "--model-path", str(tmp_path / "qwen-vl"),
                        "--report", str(tmp_path / "s.jsonl"), "--out", str(tmp_path / "k.jsonl")])
    assert code == 2 and "no field 'content_image'" in _error_line(capsys)


def test_pair_prompts_cli_is_resumable(tmp_path, capsys):
    write_jsonl(tmp_path / "styles.jsonl", [{"id": f"s{i}", "prompt": f"style {i}"} for i in range(5)])
    write_jsonl(tmp_path / "contents.jsonl", [{"id": f"c{i}", "prompt": f"content {i}"} for i in range(7)])
    argv = ["pair-prompts", "--styles", str(tmp_path / "styles.jsonl"), "--contents", str(tmp_path / "contents.jsonl"),
            "--per-style", "3", "--shard-size", "4", "--out-dir", str(tmp_path / "jobs")]
    assert curate_main(argv) == 0
    assert _summary(capsys) == {"num_jobs": 15, "num_shards": 4, "written": 4, "skipped": 0,
                                "out_dir": str(tmp_path / "jobs")}
    first = (tmp_path / "jobs" / "shard-00001.jsonl").read_text()
    assert curate_main(argv) == 0
    assert _summary(capsys)["skipped"] == 4
    assert (tmp_path / "jobs" / "shard-00001.jsonl").read_text() == first
    assert curate_main([*argv, "--seed", "1"]) == 2
    assert "different config" in _error_line(capsys)


def test_evaluate_retrieval_from_embeddings_and_from_an_encoder(tmp_path, capsys, tiny_siglip_dir):
    manifest, vectors, rows = _dataset(tmp_path, n_styles=3, per_style=3)
    np.save(tmp_path / "e.npy", vectors)
    assert evaluate_main(["retrieval", "--manifest", str(manifest), "--embeddings", str(tmp_path / "e.npy"),
                          "--out", str(tmp_path / "r.json")]) == 0
    summary = _summary(capsys)
    report = json.loads((tmp_path / "r.json").read_text())
    expected = retrieval_metrics(vectors, [r["style"] for r in rows])
    assert report["metrics"] == pytest.approx(expected)
    assert summary["map"] == round(expected["map"], 4) and report["num_queries"] == 9

    for i, row in enumerate(rows):
        save_image(manifest.parent / row["image"], seed=i)
    assert evaluate_main(["retrieval", "--manifest", str(manifest), "--encoder", "siglip", "--model",
                          str(tiny_siglip_dir), "--batch-size", "4", "--save-embeddings",
                          str(tmp_path / "siglip.safetensors"), "--out", str(tmp_path / "r2.json")]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "r2.json").read_text())["embedding_dim"] == 32
    # The saved embeddings feed curation directly (ids travel in the metadata).
    assert curate_main(["dedup", "--manifest", str(manifest), "--embeddings", str(tmp_path / "siglip.safetensors"),
                        "--clusters", "2", "--out", str(tmp_path / "k.jsonl"),
                        "--report", str(tmp_path / "d.jsonl")]) == 0
    assert _summary(capsys)["records"] == 9


def test_evaluate_suite_cli_and_errors(tmp_path, capsys, tiny_siglip_dir):
    for i in range(2):
        for k, kind in enumerate(("content", "style", "output")):
            save_image(tmp_path / "triples" / kind / f"p{i}.png", seed=10 * i + k)
    code = evaluate_main(["suite", "--triples", str(tmp_path / "triples"), "--style-encoder", "siglip", "--style-model",
                          str(tiny_siglip_dir), "--content-encoder", "siglip", "--content-model", str(tiny_siglip_dir),
                          "--out-dir", str(tmp_path / "suite")])
    assert code == 0
    assert _summary(capsys)["triples"] == 2
    assert (tmp_path / "suite" / "report.html").stat().st_size > 1000

    code = evaluate_main(["suite", "--triples", str(tmp_path / "triples"), "--style-encoder", "megastyle",
                          "--style-model", str(tiny_siglip_dir), "--content-encoder", "siglip", "--content-model",
                          str(tiny_siglip_dir), "--out-dir", str(tmp_path / "x")])
    assert code == 2 and "needs --weights" in _error_line(capsys)
    write_jsonl(tmp_path / "m.jsonl", [{"id": "a", "style": "x"}])
    np.save(tmp_path / "e.npy", np.ones((1, 2), dtype=np.float32))
    code = evaluate_main(["retrieval", "--manifest", str(tmp_path / "m.jsonl"), "--embeddings", str(tmp_path / "e.npy"),
                          "--encoder", "siglip", "--out", str(tmp_path / "r.json")])
    assert code == 2 and "either --embeddings, or --encoder" in _error_line(capsys)
    code = evaluate_main(["retrieval", "--manifest", str(tmp_path / "m.jsonl"), "--embeddings", str(tmp_path / "e.npy"),
                          "--out", str(tmp_path / "r.json")])
    assert code == 2 and "no label occurs more than once" in _error_line(capsys)
