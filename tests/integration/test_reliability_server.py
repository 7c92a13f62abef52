"""Faults and hostile inputs through a real ComfyUI server: the server keeps serving, the loaded-model
list stays clean, and every bad input ends the prompt with an error that names it.

The server is this module's own, so that a crash here (SIGBUS from a checkpoint changed on disk)
cannot take other tests' server down with it.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
import torch

from comfy_harness.server import PromptFailed, output_text
from comfy_harness.tiny_model_files import TINY_VAE_NAME
from comfy_harness.workflow_api import TINY_FLUX_INPUTS
from styleexpert_files import write_tiny_checkpoint

pytestmark = [pytest.mark.comfyui, pytest.mark.bad_input]
CHECKPOINT = "styleexpert.safetensors"


@pytest.fixture(scope="module")
def server(comfy_server_factory, tiny_vae_file):
    server = comfy_server_factory(model_files={f"vae/{TINY_VAE_NAME}": tiny_vae_file})
    write_tiny_checkpoint(server.base_dir / "models" / "styleexpert", CHECKPOINT)
    return server


def styleexpert_path(server, name: str):
    return server.base_dir / "models" / "styleexpert" / name


def copy_checkpoint(server, name: str) -> str:
    shutil.copyfile(styleexpert_path(server, CHECKPOINT), styleexpert_path(server, name))
    return name


def node(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def sampling_prompt(ckpt_name: str = CHECKPOINT, mode: str = "dynamic", strength: float = 1.0,
                    expert_from=("2", 0)) -> dict:
    """Tiny Flux + a StyleExpert style (tiny SigLIP) -> Apply -> KSampler (1 step) -> loaded-model report."""
    expert = list(expert_from)
    return {
        "1": node("StyleExpertTestTinyFlux", **TINY_FLUX_INPUTS),
        "2": node("StyleExpertLoader", ckpt_name=ckpt_name),
        "3": node("StyleExpertTestTinyClipVision", num_hidden_layers=27, hidden_size=32, num_attention_heads=2,
                  intermediate_size=64, image_size=56, patch_size=14, seed=0),
        "4": node("StyleExpertTestImage", width=56, height=56, batch_size=1, seed=3),
        "5": node("StyleExpertEncodeStyle", styleexpert=expert, clip_vision=["3", 0], images=["4", 0], mode="mean"),
        "6": node("StyleExpertApply", model=["1", 0], styleexpert=expert, style=["5", 0], mode=mode,
                  strength=strength, shared_strength=1.0, routed_strength=1.0, double_blocks=1.0,
                  single_blocks=1.0, top_k=0, alignment="from checkpoint"),
        "7": node("StyleExpertTestConditioning", seed=1, tokens=4, context_dim=32, pooled_dim=32, guidance=3.5),
        "8": node("ConditioningZeroOut", conditioning=["7", 0]),
        "9": node("EmptySD3LatentImage", width=64, height=64, batch_size=1),
        "10": node("KSampler", model=["6", 0], positive=["7", 0], negative=["8", 0], latent_image=["9", 0],
                   seed=0, steps=1, cfg=1.0, sampler_name="euler", scheduler="simple", denoise=1.0),
        "11": node("StyleExpertTestLoadedModels", after=["10", 0]),
    }


def loaded_models(history: dict, node_id: str = "11") -> list[dict]:
    return json.loads(output_text(history, node_id)[0])


def classes(models: list[dict]) -> list[str]:
    return sorted(str(m["class"]) for m in models)


def run_failing(server, prompt: dict, expected: str) -> str:
    """Run a prompt that must fail with `expected` in its error; then check the server still runs one."""
    with pytest.raises(PromptFailed) as failure:
        server.run_prompt(prompt, timeout=180)
    message = str(failure.value)
    assert expected in message
    assert server.run_prompt({"1": node("StyleExpertTestLoadedModels")})["status"]["status_str"] == "success"
    return message


# -- item 2: dynamic mode leaves nothing behind --------------------------------------------------


def test_fifty_dynamic_runs_leave_the_loaded_model_list_as_after_one_and_free_unloads_the_bank(server):
    after_one = loaded_models(server.run_prompt(sampling_prompt(strength=1.0), timeout=180))
    assert classes(after_one).count("ExpertBank") == 1
    for i in range(1, 50):  # another strength re-runs Apply and the sampler with the same loaded checkpoint
        history = server.run_prompt(sampling_prompt(strength=1.0 - i / 100), timeout=180)
    after_fifty = loaded_models(history)
    assert classes(after_fifty) == classes(after_one)
    assert not any(m["dead"] for m in after_fifty), after_fifty
    assert "memory leak" not in server.log_text()

    server.free()  # handled by the prompt worker between prompts
    deadline = time.monotonic() + 20
    while True:
        now = loaded_models(server.run_prompt({"1": node("StyleExpertTestLoadedModels")}), "1")
        if "ExpertBank" not in classes(now) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "ExpertBank" not in classes(now), now


# -- item 1: a checkpoint changed on disk never kills the server -----------------------------------


def test_checkpoint_truncated_in_place_while_in_use_does_not_kill_the_server(server):
    """The file is shortened (mtime kept) after the loader ran and before the experts are used."""
    name = copy_checkpoint(server, "inflight.safetensors")
    prompt = sampling_prompt(name, mode="dynamic", expert_from=("12", 0))
    prompt["12"] = node("StyleExpertTestTruncateFile", value=["2", 0], folder="styleexpert", name=name, size=1000)
    history = server.run_prompt(prompt, timeout=180)  # the loaded checkpoint owns its bytes
    assert history["status"]["status_str"] == "success"
    # A later run notices the changed file, reloads it and says what is wrong with it.
    prompt["6"]["inputs"]["strength"] = 0.5
    message = run_failing(server, prompt, "truncated or corrupt")
    assert name in message


def test_checkpoint_shortened_between_runs_keeping_its_mtime_is_reloaded_and_refused(server):
    name = copy_checkpoint(server, "merged.safetensors")
    assert server.run_prompt(sampling_prompt(name, mode="merge"), timeout=180)["status"]["status_str"] == "success"
    path = styleexpert_path(server, name)
    stat = path.stat()
    os.truncate(path, stat.st_size // 2)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    message = run_failing(server, sampling_prompt(name, mode="merge", strength=0.5), "truncated or corrupt")
    assert name in message
    # Put back, the file loads again.
    copy_checkpoint(server, name)
    assert server.run_prompt(sampling_prompt(name, mode="merge", strength=0.25), timeout=180)


# -- item 3 and 6: bad values through the API --------------------------------------------------------


@pytest.mark.parametrize("field,value,expected", [
    ("strength", float("nan"), "strength is nan; it must be a finite number"),
    ("routed_strength", float("nan"), "routed_strength is nan"),  # ComfyUI itself rejects +-Inf (min/max)
    ("single_blocks", float("nan"), "single_blocks is nan"),
    ("mode", "bogus", "mode must be one of ['merge', 'dynamic'], got 'bogus'"),
])
def test_apply_refuses_non_finite_strengths_and_unknown_modes(server, field, value, expected):
    prompt = sampling_prompt()
    prompt["6"]["inputs"][field] = value
    run_failing(server, prompt, expected)


def test_encode_refuses_an_unknown_mode(server):
    prompt = sampling_prompt()
    prompt["5"]["inputs"]["mode"] = "bogus"
    run_failing(server, prompt, "mode must be one of ['mean', 'per image'], got 'bogus'")


def image_prompt(target: str, fill: str = "none", channels: int = 3) -> dict:
    """Reference Latents (content + style) or Encode Style on an image made bad by a test node."""
    prompt = {
        "1": node("StyleExpertTestTinyFlux", **TINY_FLUX_INPUTS),
        "2": node("StyleExpertLoader", ckpt_name=CHECKPOINT),
        "3": node("StyleExpertTestTinyClipVision", num_hidden_layers=27, hidden_size=32, num_attention_heads=2,
                  intermediate_size=64, image_size=56, patch_size=14, seed=0),
        "4": node("StyleExpertTestImage", width=64, height=64, batch_size=1, seed=3),
        "5": node("StyleExpertTestCorruptImage", image=["4", 0], fill=fill, channels=channels),
        "6": node("VAELoader", vae_name=TINY_VAE_NAME),
        "7": node("StyleExpertTestConditioning", seed=1, tokens=4, context_dim=32, pooled_dim=32, guidance=3.5),
    }
    if target == "encode":
        prompt["8"] = node("StyleExpertEncodeStyle", styleexpert=["2", 0], clip_vision=["3", 0], images=["5", 0],
                           mode="mean")
    else:
        images = {"content": ["4", 0], "style": ["4", 0], target: ["5", 0]}
        prompt["8"] = node("StyleExpertReferenceLatents", model=["1", 0], conditioning=["7", 0], vae=["6", 0],
                           layout="official", **images)
    prompt["9"] = node("StyleExpertTestInspect", value=["8", 0])
    return prompt


@pytest.mark.parametrize("target", ["content", "style", "encode"])
@pytest.mark.parametrize("fill,channels,expected", [
    ("nan", 3, "image contains NaN or Inf pixels"),
    ("inf", 3, "image contains NaN or Inf pixels"),
    ("none", 2, "image has 2 channel(s); connect an RGB image"),
])
def test_images_with_nan_inf_or_two_channels_are_refused_by_name(server, target, fill, channels, expected):
    what = "style" if target == "encode" else target
    run_failing(server, image_prompt(target, fill, channels), f"the {what} {expected}")


# -- item 3 and 5: Bake --------------------------------------------------------------------------------


def bake_prompt(filename: str, strength: float = 1.0, overwrite: bool = False) -> dict:
    prompt = sampling_prompt()
    for node_id in ("1", "6", "7", "8", "9", "10", "11"):
        prompt.pop(node_id)
    prompt["6"] = node("StyleExpertBakeLoRA", styleexpert=["2", 0], style=["5", 0], filename=filename,
                       strength=strength, overwrite=overwrite)
    return prompt


def loras_folder(server):
    return server.base_dir / "models" / "loras"


@pytest.mark.parametrize("filename,expected", [
    ("evil\n.safetensors", "is not a usable file name"),
    (".", "starts with '.'"),
    ("..", "starts with '.'"),
    (".hidden", "starts with '.'"),
    ("../escape", "is not a usable file name"),
])
def test_bake_refuses_file_names_that_would_hide_or_escape(server, filename, expected):
    before = set(os.listdir(loras_folder(server)))
    run_failing(server, bake_prompt(filename), expected)
    assert set(os.listdir(loras_folder(server))) == before


def test_bake_refuses_a_nan_strength_and_writes_nothing(server):
    before = set(os.listdir(loras_folder(server)))
    run_failing(server, bake_prompt("nan_strength", strength=float("nan")), "strength is nan")
    assert set(os.listdir(loras_folder(server))) == before


def test_bake_never_touches_an_unrelated_file_named_like_its_temp_file(server):
    unrelated = loras_folder(server) / "kept.safetensors.tmp"
    unrelated.write_bytes(b"someone else's data")
    server.run_prompt(bake_prompt("kept", overwrite=True), timeout=180)
    assert unrelated.read_bytes() == b"someone else's data"
    assert (loras_folder(server) / "kept.safetensors").is_file()
    assert sorted(os.listdir(loras_folder(server))) == ["kept.safetensors", "kept.safetensors.tmp"]


# -- item 3 and 6: bad checkpoint files through the loader ---------------------------------------------


def _rewrite(source, target, change=None, metadata=None):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    if change:
        change(tensors)
    save_file(tensors, str(target), metadata={**meta, **(metadata or {})})


def _poison(part, value):
    def change(tensors):
        key = next(k for k in sorted(tensors) if part in k)
        tensors[key] = tensors[key].clone()
        tensors[key].view(-1)[-1] = value
    return change


def write_bad_file(server, case: str) -> str:
    good = styleexpert_path(server, CHECKPOINT)
    name = f"bad_{case}.safetensors"
    bad = styleexpert_path(server, name)
    projector_layers = {"num_tokens": 16, "style_tokens": 2, "width": 32, "out_dim": 8}
    if case in ("nan_expert", "inf_router", "nan_projector"):
        part, value = {"nan_expert": (".B", float("nan")), "inf_router": (".gate", float("inf")),
                       "nan_projector": ("projector.", float("nan"))}[case]
        _rewrite(good, bad, _poison(part, value))
    elif case == "moe_metadata_5":
        _rewrite(good, bad, metadata={"styleexpert.moe": "5"})
    elif case in ("projector_layers_abc", "projector_layers_null"):
        layers = "abc" if case.endswith("abc") else None
        _rewrite(good, bad, metadata={"styleexpert.projector": json.dumps({**projector_layers, "layers": layers})})
    elif case == "no_tensors":
        from safetensors.torch import save_file
        save_file({}, str(bad), metadata={"format": "styleexpert", "styleexpert.version": "1"})
    elif case == "garbage_0x80":
        bad.write_bytes(b"\x80" + bytes(range(256)) * 4)
    return name


@pytest.mark.parametrize("case,expected", [
    ("nan_expert", "contains NaN or Inf values"),
    ("inf_router", "contains NaN or Inf values"),
    ("nan_projector", "contains NaN or Inf values"),
    ("moe_metadata_5", "metadata 'styleexpert.moe' is not a valid MoEConfig"),
    ("projector_layers_abc", "metadata 'styleexpert.projector' is not a valid ProjectorConfig"),
    ("projector_layers_null", "metadata 'styleexpert.projector' is not a valid ProjectorConfig"),
    ("no_tensors", "holds neither expert layers nor a style projector"),
    ("garbage_0x80", "not a readable .safetensors file"),
])
def test_bad_checkpoint_files_are_refused_by_name(server, case, expected):
    name = write_bad_file(server, case)
    prompt = {"1": node("StyleExpertLoader", ckpt_name=name), "2": node("StyleExpertTestInspect", value=["1", 0])}
    message = run_failing(server, prompt, expected)
    assert name in message
    assert "pickle" not in message


def test_official_moe_file_picked_as_the_projector_is_refused_at_load(server):
    from safetensors.torch import save_file
    moe = styleexpert_path(server, "official_moe.safetensors")
    save_file({f"transformer_blocks.0.attn.to_q.lora_layer.{k}": torch.zeros(shape) for k, shape in (
        ("loraA", (4, 4, 64)), ("loraB", (4, 64, 4)), ("shared_A", (1, 4, 64)), ("shared_B", (1, 64, 4)),
        ("cond_gate.weight", (4, 48)))}, str(moe))
    prompt = {"1": node("StyleExpertLoader", ckpt_name=moe.name, projector_name=moe.name),
              "2": node("StyleExpertTestInspect", value=["1", 0])}
    run_failing(server, prompt, "official_moe.safetensors: this is an official MoE file (expert layers), not a "
                                "style projector file")
