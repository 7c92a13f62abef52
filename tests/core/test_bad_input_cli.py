"""The CLI and the file writers under bad input: an input is never destroyed, a failed write leaves
nothing behind, nothing but the output is touched, and NaN never reaches a file."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from styleexpert_core import load_official, save_native
from styleexpert_core.cli import main
from styleexpert_core.safe_write import write_atomically

from .test_formats_cli import PROJ, official_files

pytestmark = pytest.mark.bad_input


@pytest.fixture
def files(tmp_path):
    moe, encoder, _ = official_files(tmp_path)
    native = tmp_path / "native.safetensors"
    save_native(load_official(moe, encoder), native)
    latent = tmp_path / "style.safetensors"
    save_file({"style_latent": torch.randn(PROJ.cond_dim)}, str(latent))
    return {"moe": moe, "encoder": encoder, "native": native, "latent": latent}


def bake(files, output, *extra):
    return main(["bake", "--checkpoint", str(files["native"]), "--style-latent", str(files["latent"]),
                 "-o", str(output), *extra])


def convert(files, output, *extra):
    return main(["convert-official", "--moe", str(files["moe"]), "--encoder", str(files["encoder"]),
                 "-o", str(output), *extra])


@pytest.mark.parametrize("command,victim", [("bake", "native"), ("bake", "latent"), ("convert", "moe"),
                                            ("convert", "encoder")])
@pytest.mark.parametrize("spelling", ["same", "relative", "hardlink"])
def test_output_equal_to_an_input_is_refused_even_with_force(files, capsys, monkeypatch, command, victim, spelling):
    before = {k: p.read_bytes() for k, p in files.items()}
    target = files[victim]
    if spelling == "relative":
        monkeypatch.chdir(target.parent)
        target = os.path.join(".", "..", target.parent.name, target.name)
    elif spelling == "hardlink":
        target = target.with_name("link_" + target.name)
        os.link(files[victim], target)
    run = bake if command == "bake" else convert
    assert run(files, target, "--force") == 2
    assert "is also an input" in capsys.readouterr().err
    assert {k: p.read_bytes() for k, p in files.items()} == before


@pytest.mark.parametrize("command", ["bake", "convert"])
def test_a_folder_as_output_is_a_clear_error_that_leaves_nothing_behind(files, tmp_path, capsys, command):
    folder = tmp_path / "out_dir"
    folder.mkdir()
    before = sorted(os.listdir(tmp_path))
    run = bake if command == "bake" else convert
    assert run(files, folder, "--force") == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == before and not os.listdir(folder)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_cli_bake_refuses_a_non_finite_strength(files, tmp_path, capsys, value):
    out = tmp_path / "nan.safetensors"
    assert bake(files, out, f"--strength={value}") == 2
    assert f"strength is {value}" in capsys.readouterr().err
    assert not out.exists()


def test_writers_leave_an_unrelated_file_named_like_the_old_temp_file_alone(files, tmp_path):
    unrelated = tmp_path / "out.safetensors.tmp"
    unrelated.write_bytes(b"not ours")
    assert bake(files, tmp_path / "out.safetensors") == 0
    assert convert(files, tmp_path / "out2.safetensors") == 0
    assert unrelated.read_bytes() == b"not ours"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_a_failed_write_leaves_no_temp_file_and_keeps_the_old_output(tmp_path):
    out = tmp_path / "kept.safetensors"
    out.write_bytes(b"old")

    def failing(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(out, failing)
    assert os.listdir(tmp_path) == ["kept.safetensors"] and out.read_bytes() == b"old"

