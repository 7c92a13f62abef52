"""Style reference sets: a folder of style images as one batch for Encode Style, and the similarity
matrix of a batch before sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import test_nodes_inprocess as inprocess
from test_nodes_inprocess import run
from styleexpert_core.similarity_chart import cosine_matrix

pytestmark = pytest.mark.comfyui
ckpt_file, expert = inprocess.ckpt_file, inprocess.expert  # the same fixtures


@pytest.fixture(scope="module")
def style_folder(comfy) -> Path:
    folder = Path(comfy.folder_paths.get_input_directory()) / "style_set"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name, size in (("b_ink.png", (48, 40)), ("a_wash.jpg", (64, 64)), ("c_oil.webp", (30, 50))):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_folder_loads_as_one_batch_that_encode_accepts(pack, expert, tiny_siglip, style_folder):
    images, names, count = run(pack["StyleExpertLoadStyleFolder"], folder="style_set", size=64).result
    assert images.shape == (3, 64, 64, 3) and count == 3
    assert names.split("\n") == ["a_wash.jpg", "b_ink.png", "c_oil.webp"]  # sorted, the text file left out
    first = np.asarray(Image.open(style_folder / "a_wash.jpg").convert("RGB"), dtype=np.float32) / 255
    np.testing.assert_allclose(images[0].numpy(), first, atol=0.02)  # 64x64 already: loaded as it is
    per_image = run(pack["StyleExpertEncodeStyle"], styleexpert=expert, clip_vision=tiny_siglip, images=images,
                    mode="per image").result[0]
    mean = run(pack["StyleExpertEncodeStyle"], styleexpert=expert, clip_vision=tiny_siglip, images=images,
               mode="mean").result[0]
    assert per_image.values.shape[0] == 3
    torch.testing.assert_close(mean.values, per_image.values.mean(0, keepdim=True))
    assert run(pack["StyleExpertLoadStyleFolder"], folder="style_set", size=64, max_images=2).result[2] == 2
    fingerprint = pack["StyleExpertLoadStyleFolder"].fingerprint_inputs(folder="style_set")
    Image.new("RGB", (8, 8)).save(style_folder / "d_new.png")
    try:  # a new image in the folder makes ComfyUI load the batch again
        assert pack["StyleExpertLoadStyleFolder"].fingerprint_inputs(folder="style_set") != fingerprint
    finally:
        (style_folder / "d_new.png").unlink()


@pytest.mark.bad_input
@pytest.mark.parametrize("folder, message", [("../..", "outside ComfyUI's input directory"),
                                             ("no_such_folder", "is not a folder"),
                                             ("empty_set", "holds no images")])
def test_bad_folders_are_refused_before_running(pack, comfy, folder, message):
    (Path(comfy.folder_paths.get_input_directory()) / "empty_set").mkdir(exist_ok=True)
    verdict = pack["StyleExpertLoadStyleFolder"].validate_inputs(folder=folder)
    assert isinstance(verdict, str) and message in verdict
    with pytest.raises(Exception, match=message):
        run(pack["StyleExpertLoadStyleFolder"], folder=folder)


def test_similarity_matrix_of_style_references(pack, expert, tiny_siglip, style_folder):
    images, names, _ = run(pack["StyleExpertLoadStyleFolder"], folder="style_set", size=64).result
    batch = torch.cat([images, images[:1]])  # the first image twice: similarity 1 between them
    labels = names + "\nwash again"
    out = run(pack["StyleExpertStyleSimilarity"], styleexpert=expert,
              clip_vision=tiny_siglip, images=batch, names=labels)
    chart, mean, summary = out.result
    latents = run(pack["StyleExpertEncodeStyle"], styleexpert=expert, clip_vision=tiny_siglip, images=batch,
                  mode="per image").result[0].values
    matrix = cosine_matrix(latents)
    assert mean == pytest.approx(float(matrix[~np.eye(4, dtype=bool)].mean()), abs=1e-5)
    assert "closest a_wash.jpg & wash again (1.000)" in summary and out.ui["text"][0] == summary
    assert chart.shape[0] == 1 and chart.shape[2] >= 560 and chart.shape[-1] == 3
    siglip = run(pack["StyleExpertStyleSimilarity"], styleexpert=expert, clip_vision=tiny_siglip, images=batch,
                 space="SigLIP embedding").result[1]
    assert siglip != pytest.approx(mean)  # the other space: another matrix


@pytest.mark.bad_input
def test_similarity_refuses_names_that_do_not_match_the_images(pack, expert, tiny_siglip):
    with pytest.raises(Exception, match="names has 2 line"):
        run(pack["StyleExpertStyleSimilarity"], styleexpert=expert, clip_vision=tiny_siglip,
            images=torch.rand(3, 32, 32, 3), names="a\nb")
    with pytest.raises(Exception, match="no style image"):
        run(pack["StyleExpertStyleSimilarity"], styleexpert=expert, clip_vision=tiny_siglip,
            images=torch.zeros(0, 32, 32, 3))
