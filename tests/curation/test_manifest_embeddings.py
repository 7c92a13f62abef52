import json

import numpy as np
import pytest

from tests.curation.helpers import write_jsonl
from training.data.embeddings import aligned_embeddings, load_aligned, load_embeddings, save_embeddings
from training.data.errors import (EmbeddingError, EmbeddingMismatchError, LabelError, ManifestError,
                                    MissingFileError)
from training.data.manifest import read_manifest, write_manifest


def test_bad_json_line_names_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a"}\n\n{"id": "b", oops}\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"line 3: not valid JSON"):
        read_manifest(path)


def test_non_object_line_is_refused(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"line 2: expected a JSON object"):
        read_manifest(path)


def test_empty_manifest(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ManifestError, match="holds no records"):
        read_manifest(path)


def test_missing_and_duplicate_ids(tmp_path):
    with pytest.raises(ManifestError, match=r'line 2: missing "id"'):
        read_manifest(write_jsonl(tmp_path / "a.jsonl", [{"id": "x"}, {"image": "y.png"}]))
    with pytest.raises(ManifestError, match=r"line 2: id 'x' already used on line 1"):
        read_manifest(write_jsonl(tmp_path / "b.jsonl", [{"id": "x"}, {"id": "x"}]))


def test_missing_manifest_file(tmp_path):
    with pytest.raises(MissingFileError, match="Manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")
    assert issubclass(MissingFileError, FileNotFoundError)


def test_missing_label_field_names_line_and_record(tmp_path):
    manifest = read_manifest(write_jsonl(tmp_path / "m.jsonl", [{"id": "a", "style": "s"}, {"id": "b"}]))
    with pytest.raises(LabelError, match=r"line 2: record 'b' has no field 'style'"):
        manifest.labels("style")
    bad = read_manifest(write_jsonl(tmp_path / "n.jsonl", [{"id": "a", "style": ["x"]}]))
    with pytest.raises(LabelError, match="must be a string or number label"):
        bad.labels("style")


def test_paths_are_rebased_when_written_elsewhere(tmp_path):
    manifest = read_manifest(write_jsonl(tmp_path / "data" / "m.jsonl",
                                         [{"id": "a", "image": "img/a.png", "style_image": "s.png", "style": "x"}]))
    out = tmp_path / "out" / "deep" / "kept.jsonl"
    write_manifest(out, manifest.records, manifest)
    row = json.loads(out.read_text())
    assert (out.parent / row["image"]).resolve() == (tmp_path / "data" / "img" / "a.png").resolve()
    assert (out.parent / row["style_image"]).resolve() == (tmp_path / "data" / "s.png").resolve()
    assert row["style"] == "x"


def test_embeddings_align_by_ids_and_by_order(tmp_path):
    manifest = read_manifest(write_jsonl(tmp_path / "m.jsonl", [{"id": "b"}, {"id": "a"}]))
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], dtype=np.float32)
    save_embeddings(tmp_path / "e.safetensors", vectors, ids=["a", "b", "extra"])
    np.testing.assert_array_equal(load_aligned(manifest, tmp_path / "e.safetensors"), vectors[[1, 0]])
    np.save(tmp_path / "e.npy", vectors[:2])
    np.testing.assert_array_equal(load_aligned(manifest, tmp_path / "e.npy"), vectors[:2])


def test_row_count_mismatch_without_ids(tmp_path):
    manifest = read_manifest(write_jsonl(tmp_path / "m.jsonl", [{"id": "a"}, {"id": "b"}, {"id": "c"}]))
    np.save(tmp_path / "e.npy", np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(EmbeddingMismatchError, match="has 2 rows but .* has 3 records"):
        aligned_embeddings(manifest, load_embeddings(tmp_path / "e.npy"))


def test_ids_missing_from_embeddings(tmp_path):
    manifest = read_manifest(write_jsonl(tmp_path / "m.jsonl", [{"id": "a"}, {"id": "zz"}]))
    save_embeddings(tmp_path / "e.safetensors", np.ones((1, 3)), ids=["a"])
    with pytest.raises(EmbeddingMismatchError, match=r"no embedding for 1 of 2 manifest ids \(first: \['zz'\]\)"):
        load_aligned(manifest, tmp_path / "e.safetensors")


def test_bad_embedding_files(tmp_path):
    from safetensors.numpy import save_file

    save_file({"feats": np.ones((2, 3), dtype=np.float32)}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(EmbeddingError, match="no tensor named 'embeddings'.*feats"):
        load_embeddings(tmp_path / "wrong.safetensors")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(EmbeddingError, match="not a plain numeric .npy"):
        load_embeddings(tmp_path / "obj.npy")
    nan = np.ones((3, 2), dtype=np.float32)
    nan[1, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(EmbeddingError, match="first: row 1"):
        load_embeddings(tmp_path / "nan.npy")
    np.save(tmp_path / "flat.npy", np.ones(4, dtype=np.float32))
    with pytest.raises(EmbeddingError, match=r"\[N, D\] matrix, got shape \(4,\)"):
        load_embeddings(tmp_path / "flat.npy")
    with pytest.raises(MissingFileError, match="Embeddings file not found"):
        load_embeddings(tmp_path / "absent.npy")
    (tmp_path / "e.csv").write_text("1,2\n")
    with pytest.raises(EmbeddingError, match="Unsupported embeddings file"):
        load_embeddings(tmp_path / "e.csv")
