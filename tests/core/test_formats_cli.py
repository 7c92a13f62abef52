import json

import pytest
import torch
from safetensors.torch import save_file

from styleexpert_core import (MoEConfig, ProjectorConfig, Strengths, StyleExpertCheckpoint, StyleProjector,
                              fold_checkpoint, load_checkpoint, load_native, load_official, moe_delta, route_latent,
                              save_native)
from styleexpert_core.cli import main
from styleexpert_core.errors import CheckpointError, ShapeMismatchError, StyleExpertError

from .helpers import random_tensors, read_baked_lora, rel_err
from .official_reference import official_forward

PROJ = ProjectorConfig(num_tokens=16, style_tokens=2, width=32, out_dim=4)  # cond_dim 24
CONFIG = MoEConfig(num_experts=6, rank=4, top_k=2, cond_dim=PROJ.cond_dim)
H = 16
MODULES = {  # module -> (in, out) for a tiny Flux of width 16
    "transformer_blocks.0.attn.to_q": (H, H),
    "transformer_blocks.0.attn.add_k_proj": (H, H),
    "transformer_blocks.0.ff.net.2": (4 * H, H),
    "single_transformer_blocks.1.proj_mlp": (H, 4 * H),
    "single_transformer_blocks.0.proj_out": (5 * H, H),
}


def official_files(tmp_path, prefix="", projector_suffix=".safetensors", config=CONFIG):
    moe = {}
    for i, (m, (d_in, d_out)) in enumerate(MODULES.items()):
        t = random_tensors(config, d_in, d_out, seed=i)
        for ours, theirs in (("A", "loraA"), ("B", "loraB"), ("shared_A", "shared_A"),
                             ("shared_B", "shared_B"), ("gate", "cond_gate.weight")):
            moe[f"{prefix}{m}.lora_layer.{theirs}"] = getattr(t, ours)
    save_file(moe, str(tmp_path / "moe.safetensors"))
    torch.manual_seed(0)
    proj = {f"proj_model.{k}": v for k, v in StyleProjector(PROJ).state_dict().items()}
    proj_path = tmp_path / f"encoder{projector_suffix}"
    if projector_suffix == ".safetensors":
        save_file(proj, str(proj_path))
    else:
        torch.save({"model_state_dict": proj}, proj_path)
    return tmp_path / "moe.safetensors", proj_path, moe


@pytest.mark.parametrize("prefix,suffix", [("", ".safetensors"), ("transformer.", ".pt")])
def test_official_import_is_lossless_and_round_trips_through_native(tmp_path, prefix, suffix):
    moe_path, proj_path, raw = official_files(tmp_path, prefix, suffix)
    ckpt = load_official(moe_path, proj_path)
    assert ckpt.config == CONFIG.replace(alignment="official", routing_precision="bf16")
    assert ckpt.info["source"] == "official" and set(ckpt.layers) == set(MODULES)
    save_native(ckpt, tmp_path / "native.safetensors")
    back = load_native(tmp_path / "native.safetensors")
    assert back.config == ckpt.config and back.projector_config == PROJ and back.info == ckpt.info
    for m, t in back.layers.items():
        assert torch.equal(t.A, raw[f"{prefix}{m}.lora_layer.loraA"])
        assert torch.equal(t.gate, raw[f"{prefix}{m}.lora_layer.cond_gate.weight"])
    for k, v in back.projector.items():
        assert torch.equal(v, ckpt.projector[k])
    # The converted layers compute exactly what the official forward computes (the maths, in fp32).
    m = "transformer_blocks.0.attn.to_q"
    t = back.layers[m]
    x, latent = torch.randn(2, 5, H), torch.randn(2, PROJ.cond_dim)
    ref = official_forward(x, *(raw[f"{prefix}{m}.lora_layer.{n}"] for n in
                                ("loraA", "loraB", "shared_A", "shared_B", "cond_gate.weight")), latent, 2, 4)
    fp32 = back.config.replace(routing_precision="fp32")
    assert rel_err(moe_delta(x, t, route_latent(t.gate, latent, fp32)), ref) <= 1e-5


def test_console_script_converts_from_any_folder(tmp_path, monkeypatch, capsys):
    """The `styleexpert` command pyproject installs: the function it names, run outside the pack folder."""
    import importlib
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    module, function = pyproject["project"]["scripts"]["styleexpert"].split(":")
    entry = getattr(importlib.import_module(module), function)
    official_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert entry(["convert-official", "--moe", "moe.safetensors", "--encoder", "encoder.safetensors",
                  "-o", "converted.safetensors"]) == 0
    assert load_native(tmp_path / "converted.safetensors").info["source"] == "official"
    assert capsys.readouterr().out == "wrote converted.safetensors\n"
    with pytest.raises(SystemExit):
        entry(["--help"])
    assert capsys.readouterr().out.startswith("usage: styleexpert ")


def test_cli_convert_inspect_and_bake(tmp_path, capsys):
    moe_path, proj_path, _ = official_files(tmp_path)
    native = tmp_path / "se.safetensors"
    assert main(["convert-official", "--moe", str(moe_path), "--encoder", str(proj_path), "-o", str(native)]) == 0
    assert main(["convert-official", "--moe", str(moe_path), "-o", str(native)]) == 2  # refuses to overwrite
    assert "exists" in capsys.readouterr().err

    assert main(["inspect", str(native)]) == 0
    text = capsys.readouterr().out
    assert "experts: 6 x rank 4, top_k 2 + 1 shared" in text and "alignment official" in text
    assert "SigLIP layers [-2, -11, -20]" in text
    assert main(["inspect", str(native), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["moe"]["folded_rank"] == 8 and summary["layer_groups"]["single_blocks"] == 2

    latent = torch.randn(PROJ.cond_dim)
    save_file({"style_latent": latent}, str(tmp_path / "style.safetensors"))
    lora = tmp_path / "baked.safetensors"
    assert main(["bake", "--checkpoint", str(native), "--style-latent", str(tmp_path / "style.safetensors"),
                 "-o", str(lora), "--strength", "0.5", "--alignment", "paper"]) == 0
    baked = read_baked_lora(lora)
    folded = fold_checkpoint(load_native(native), latent, alignment="paper", strengths=Strengths(total=0.5))
    assert set(baked) == set(folded)
    for m, (up, down, alpha) in baked.items():
        assert alpha == down.shape[0] == 12  # alpha / rank == 1 in any stock loader
        f_up, f_down = folded[m]
        assert rel_err(up @ down, f_up @ f_down) <= 1e-6
    # ... and the fold equals the dynamic delta of the checkpoint for this style.
    ckpt = load_native(native)
    t = ckpt.layers["single_transformer_blocks.1.proj_mlp"]
    x = torch.randn(1, 7, H)
    up, down, _ = baked["single_transformer_blocks.1.proj_mlp"]
    dyn = moe_delta(x, t, route_latent(t.gate, latent, ckpt.config.replace(alignment="paper")))
    assert rel_err(x @ (up @ down).t(), 0.5 * dyn) <= 1e-5


@pytest.mark.bad_input
def test_bake_rejects_bad_latents(tmp_path, capsys):
    moe_path, _, _ = official_files(tmp_path)
    for name, tensors, expected in [
        ("nan", {"style_latent": torch.full((PROJ.cond_dim,), float("nan"))}, "NaN"),
        ("dim", {"style_latent": torch.zeros(3072)}, "style latent must have shape"),
        ("two", {"style_latent": torch.zeros(2, PROJ.cond_dim)}, "exactly one style latent"),
        ("name", {"latent": torch.zeros(PROJ.cond_dim)}, "one tensor named 'style_latent'"),
    ]:
        save_file(tensors, str(tmp_path / f"{name}.safetensors"))
        code = main(["bake", "--checkpoint", str(moe_path), "--style-latent", str(tmp_path / f"{name}.safetensors"),
                     "-o", str(tmp_path / f"out_{name}.safetensors")])
        assert code == 2 and expected in capsys.readouterr().err, name
        assert not (tmp_path / f"out_{name}.safetensors").exists()


@pytest.mark.bad_input
def test_corrupt_pickled_and_unknown_files(tmp_path):
    moe_path, _, raw = official_files(tmp_path)
    data = moe_path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "trunc.safetensors")
    torch.save(raw, tmp_path / "pickled.safetensors")
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_checkpoint(tmp_path / "pickled.safetensors")
    with pytest.raises(CheckpointError, match="file not found"):
        load_checkpoint(tmp_path / "absent.safetensors")
    save_file({"model.diffusion_model.img_in.weight": torch.zeros(2, 2)}, str(tmp_path / "flux.safetensors"))
    with pytest.raises(CheckpointError, match="not a StyleExpert checkpoint"):
        load_checkpoint(tmp_path / "flux.safetensors")


def _mutated(tmp_path, change):
    _, _, raw = official_files(tmp_path)
    raw = dict(raw)
    change(raw)
    save_file(raw, str(tmp_path / "bad.safetensors"))
    return tmp_path / "bad.safetensors"


@pytest.mark.bad_input
def test_official_bad_keys_and_shapes(tmp_path):
    k = "transformer_blocks.0.attn.to_q.lora_layer."
    with pytest.raises(CheckpointError, match="unknown key .*lora_layer.loraC"):
        load_official(_mutated(tmp_path, lambda d: d.__setitem__(k + "loraC", torch.zeros(1))))
    with pytest.raises(CheckpointError, match="lacks tensor.*shared_B"):
        load_official(_mutated(tmp_path, lambda d: d.pop(k + "shared_B")))
    with pytest.raises(ShapeMismatchError, match="'gate' has shape"):
        load_official(_mutated(tmp_path, lambda d: d.__setitem__(k + "cond_gate.weight", torch.zeros(6, 99))))
    with pytest.raises(CheckpointError, match="not a Flux linear"):
        load_official(_mutated(tmp_path, lambda d: d.update(
            {kk.replace("to_q", "to_z"): v.clone() for kk, v in d.items() if "to_q" in kk})))


@pytest.mark.bad_input
def test_rank_above_16_under_official_rule_is_refused(tmp_path):
    moe_path, _, _ = official_files(tmp_path, config=MoEConfig(num_experts=4, rank=32, top_k=2, cond_dim=24,
                                                               scale_rule="none"))
    with pytest.raises(StyleExpertError, match="silently disables"):
        load_official(moe_path)


@pytest.mark.bad_input
def test_native_refuses_unknown_tensor_and_projector_cond_mismatch(tmp_path):
    moe_path, proj_path, _ = official_files(tmp_path)
    ckpt = load_official(moe_path, proj_path)
    save_native(ckpt, tmp_path / "n.safetensors")
    from safetensors import safe_open
    with safe_open(str(tmp_path / "n.safetensors"), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file({**tensors, "extra.weight": torch.zeros(1)}, str(tmp_path / "x.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="unknown key 'extra.weight'"):
        load_native(tmp_path / "x.safetensors")
    with pytest.raises(StyleExpertError, match="not trained together"):
        StyleExpertCheckpoint(ckpt.config.replace(cond_dim=3072), {}, ckpt.projector, ckpt.projector_config)
    meta2 = {**meta, "styleexpert.version": "9"}
    save_file(tensors, str(tmp_path / "v9.safetensors"), metadata=meta2)
    with pytest.raises(CheckpointError, match="version '9'"):
        load_native(tmp_path / "v9.safetensors")


@pytest.mark.bad_input
def test_projector_only_native_and_pt_pickle_guard(tmp_path):
    torch.manual_seed(0)
    proj = StyleProjector(PROJ).state_dict()
    save_native(StyleExpertCheckpoint(projector=proj, projector_config=PROJ), tmp_path / "p.safetensors")
    back = load_checkpoint(tmp_path / "p.safetensors")
    assert not back.has_experts and back.projector_config == PROJ
    with pytest.raises(StyleExpertError, match="only a style projector"):
        fold_checkpoint(back, torch.zeros(PROJ.cond_dim))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model_state_dict": {"x": Evil()}}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_official(None, tmp_path / "evil.pt")
