"""The example workflows (templates) as files: generated, downloadable models, images and thumbnails beside them.

Opening them in the real frontend and running them is tested in tests/integration/.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "example_workflows"
WORKFLOWS = sorted(FOLDER.glob("*.json"))
LOADER_FOLDERS = {"UNETLoader": "diffusion_models", "DualCLIPLoader": "text_encoders", "VAELoader": "vae",
                  "CLIPVisionLoader": "clip_vision"}


def _load_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _example_inputs():
    # By path: importing the pack's `nodes` package by name would shadow ComfyUI's `nodes` in this process.
    return _load_file(ROOT / "nodes" / "example_inputs.py", "styleexpert_example_inputs")


def _nodes(path: Path) -> list[dict]:
    return json.loads(path.read_text())["nodes"]


def test_committed_workflows_are_what_the_generator_writes():
    build = _load_file(ROOT / "scripts" / "build_workflows.py", "build_workflows")
    assert sorted(f"{name}.json" for name in build.WORKFLOWS) == [p.name for p in WORKFLOWS]
    for name, make in build.WORKFLOWS.items():
        expected = json.dumps(make().to_json(), indent=1) + "\n"
        assert (FOLDER / f"{name}.json").read_text() == expected, f"run python scripts/build_workflows.py ({name})"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_each_model_file_carries_its_download_link_and_folder(path):
    for node in _nodes(path):
        if node["type"] not in LOADER_FOLDERS:
            continue
        files = [v for v in node["widgets_values"] if isinstance(v, str) and v.endswith(".safetensors")]
        models = {m["name"]: m for m in node["properties"]["models"]}
        assert sorted(models) == sorted(files), node["type"]
        for name, model in models.items():
            assert model["directory"] == LOADER_FOLDERS[node["type"]]
            # the frontend's missing-models dialog offers only huggingface.co/civitai .safetensors links
            assert model["url"].startswith("https://huggingface.co/") and model["url"].endswith(f"/{name}")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_siglip_is_the_redux_file_name(path):
    text = path.read_text()
    assert "sigclip_vision_patch14_384.safetensors" in text
    assert "siglip_vision_patch14_384" not in text


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_thumbnail_and_images_ship_with_each_template(path):
    from PIL import Image

    with Image.open(path.with_suffix(".jpg")) as thumb:  # ComfyUI's template browser shows <name>.jpg
        assert thumb.format == "JPEG" and thumb.width >= 320
    shipped = {p.name for p in (FOLDER / "images").glob("*.png")}
    loaded = {node["widgets_values"][0] for node in _nodes(path) if node["type"] == "LoadImage"}
    assert loaded and loaded <= shipped
    for name in loaded:
        assert (FOLDER / "images" / name).stat().st_size < 200_000


def test_the_baked_lora_workflow_bakes_first_and_loads_after():
    nodes = {n["id"]: n for n in _nodes(FOLDER / "Bake a style into a LoRA.json")}
    links = json.loads((FOLDER / "Bake a style into a LoRA.json").read_text())["links"]
    (bake,) = [n for n in nodes.values() if n["type"] == "StyleExpertBakeLoRA"]
    sources = {nodes[link[1]]["type"] for link in links if link[3] == bake["id"]}
    assert sources == {"StyleExpertLoader", "StyleExpertEncodeStyle"}
    # Step 2 needs the baked file, so it is muted (mode 2) until the user has run step 1.
    lora = next(n for n in nodes.values() if n["type"] == "LoraLoaderModelOnly")
    assert bake["mode"] == 0 and lora["mode"] == 2
    assert all(n["mode"] == 2 for n in nodes.values() if n["type"] in ("KSampler", "SaveImage", "UNETLoader"))


def test_example_images_are_copied_once_and_never_replace_a_users_file(tmp_path):
    inputs = _example_inputs()
    EXAMPLE_IMAGES, copy_example_images = inputs.EXAMPLE_IMAGES, inputs.copy_example_images
    shipped = sorted(p.name for p in EXAMPLE_IMAGES.glob("*.png"))
    users = tmp_path / "input" / shipped[0]
    users.parent.mkdir()
    users.write_bytes(b"the user's own picture")
    assert copy_example_images(tmp_path / "input") == shipped[1:]
    assert users.read_bytes() == b"the user's own picture"
    for name in shipped[1:]:
        assert (tmp_path / "input" / name).read_bytes() == (EXAMPLE_IMAGES / name).read_bytes()
    assert copy_example_images(tmp_path / "input") == []


def test_an_unwritable_input_folder_does_not_stop_the_pack(tmp_path, caplog):
    copy_example_images = _example_inputs().copy_example_images
    blocker = tmp_path / "input"
    blocker.write_text("a file where the folder should be")
    assert copy_example_images(blocker) == []
    assert "could not copy the example images" in caplog.text
