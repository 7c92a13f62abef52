"""Checkpoint files under bad input and faults: a loaded file owns its bytes, NaN/Inf weights are
refused by file and key, malformed metadata and empty or garbage files get errors naming the file."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from styleexpert_core import load_checkpoint, load_official, save_native
from styleexpert_core.cli import main
from styleexpert_core.errors import CheckpointError

from .test_formats_cli import PROJ, official_files

pytestmark = pytest.mark.bad_input
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def native(tmp_path):
    moe, encoder, _ = official_files(tmp_path)
    path = tmp_path / "native.safetensors"
    save_native(load_official(moe, encoder), path)
    return path


def rewrite(path: Path, out: Path, change_tensors=None, metadata: dict | None = None) -> Path:
    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    if change_tensors:
        change_tensors(tensors)
    save_file(tensors, str(out), metadata={**meta, **(metadata or {})})
    return out


@pytest.mark.parametrize("mmap", [True, False])
def test_a_loaded_checkpoint_survives_its_file_being_truncated(native, mmap):
    """In a subprocess: reading a memory-mapped tensor whose file was cut ends the process with SIGBUS."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from styleexpert_core import load_checkpoint
        ckpt = load_checkpoint({str(native)!r}, mmap={mmap})
        def total():
            tensors = [t for layer in ckpt.layers.values() for t in layer.as_dict().values()]
            return sum(float(t.sum()) for t in tensors + list(ckpt.projector.values()))
        before = total()
        os.truncate({str(native)!r}, 100)
        print("same" if total() == before else "changed")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert result.stdout.strip() == "same"


def _poison(key_part: str, value: float):
    def change(tensors):
        key = next(k for k in sorted(tensors) if key_part in k)
        tensors[key] = tensors[key].clone()
        tensors[key].view(-1)[-1] = value
    return change


@pytest.mark.parametrize("key_part,value", [
    (".A", float("nan")), (".B", float("inf")), (".shared_A", float("-inf")), (".gate", float("nan")),
    ("projector.", float("nan")),
])
def test_nan_or_inf_weights_are_refused_naming_file_and_tensor(native, tmp_path, key_part, value):
    bad = rewrite(native, tmp_path / "poisoned.safetensors", _poison(key_part, value))
    with pytest.raises(CheckpointError, match=r"poisoned\.safetensors: tensor '.*' contains NaN or Inf"):
        load_checkpoint(bad)


@pytest.mark.parametrize("which", ["moe", "encoder"])
def test_nan_in_official_files_is_refused(tmp_path, which):
    moe, encoder, _ = official_files(tmp_path)
    path = {"moe": moe, "encoder": encoder}[which]
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    _poison("", float("nan"))(tensors)
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=f"{path.name}: tensor .* contains NaN or Inf"):
        load_official(moe, encoder)


@pytest.mark.parametrize("key,value,expected", [
    ("styleexpert.moe", "5", "styleexpert.moe"),
    ("styleexpert.moe", json.dumps({"num_experts": "many"}), "styleexpert.moe"),
    ("styleexpert.projector", json.dumps({**PROJ.to_dict(), "layers": "abc"}), "styleexpert.projector"),
    ("styleexpert.projector", json.dumps({**PROJ.to_dict(), "layers": None}), "styleexpert.projector"),
    ("styleexpert.projector", "[1, 2]", "styleexpert.projector"),
])
def test_malformed_metadata_names_the_file_and_the_field(native, tmp_path, capsys, key, value, expected):
    bad = rewrite(native, tmp_path / "malformed.safetensors", metadata={key: value})
    with pytest.raises(CheckpointError, match=rf"malformed\.safetensors: .*'{expected}'"):
        load_checkpoint(bad)
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "malformed.safetensors" in err and "Traceback" not in err


def test_a_native_file_without_tensors_is_refused(tmp_path):
    path = tmp_path / "empty.safetensors"
    save_file({}, str(path), metadata={"format": "styleexpert", "styleexpert.version": "1"})
    with pytest.raises(CheckpointError, match="empty.safetensors: .*neither expert layers nor a style projector"):
        load_checkpoint(path)


@pytest.mark.parametrize("head", [b"\x80", b"\x80\x00", b"\x80\x09garbage"])
def test_garbage_starting_with_0x80_is_not_called_a_pickle(tmp_path, head):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(head + os.urandom(200))
    with pytest.raises(CheckpointError, match="not a readable .safetensors file") as error:
        load_checkpoint(path)
    assert "pickle" not in str(error.value)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_real_pickles_are_still_named_as_such(tmp_path, protocol):
    path = tmp_path / "raw.safetensors"
    path.write_bytes(pickle.dumps({"x": [1, 2, 3]}, protocol=protocol))
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_checkpoint(path)


def test_official_files_in_each_others_places_are_refused(tmp_path):
    moe, encoder, _ = official_files(tmp_path)
    with pytest.raises(CheckpointError, match="encoder.safetensors is an official style projector file"):
        load_checkpoint(encoder, moe)
    with pytest.raises(CheckpointError, match="moe.safetensors: this is an official MoE file .*not a style projector"):
        load_checkpoint(moe, moe)
