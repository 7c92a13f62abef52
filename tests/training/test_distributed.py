"""Stage 2 across processes on gloo: epochs reshuffle, exact resume, FSDP2; DeepSpeed's dtype contract.

Multi-process runs go through the launchers users run (torchrun, ``accelerate launch`` with the
shipped FSDP2 config) on ``tests/training/stage2_launcher.py``, which only adds a snapshot of the
run folder after a save (what an interrupted run leaves) and, for FSDP2, the CPU state accelerate
refuses to build (see that file).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.stage2.data import TripletCache
from training.data.errors import ConfigError
from training.stage2.train import Stage2Config, build_model, micro_batch_loss, start

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = str(REPO / "tests" / "training" / "stage2_launcher.py")
STEPS, SNAPSHOT = 5, 2  # 24 items / batch 4 / 2 ranks = 3 steps an epoch: the resumed run finishes epoch 0
ARGS = ["--num_experts=4", "--rank=2", f"--steps={STEPS}", "--batch_size=4", "--lr=1e-2", "--warmup_steps=1",
        "--grad_clip=0.01", "--gradient_checkpointing=false", "--save_every=2", "--log_every=1", "--device=cpu"]


def free_port() -> int:
    with socket.socket() as s:  # a free port, so parallel sessions do not collide
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(launcher: list[str], script: list[str], env: dict | None = None) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env or {})}
    # DeepSpeed's first CPU run compiles its shared-memory op: 8-12 min on a busy 2-core machine
    timeout = 1500 if "DS_ACCELERATOR" in env else 600
    proc = subprocess.run([sys.executable, "-m", *launcher, *script], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]


def torchrun() -> list[str]:
    return ["torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]


def accelerate_fsdp2() -> list[str]:
    return ["accelerate.commands.launch", "--config_file", str(REPO / "training/configs/accelerate_fsdp2.yaml"),
            "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(free_port())]


def accelerate_deepspeed() -> list[str]:
    return ["accelerate.commands.launch", "--config_file",
            str(REPO / "training/configs/accelerate_deepspeed_zero2.yaml"), "--num_processes", "2",
            "--main_process_port", str(free_port())]


def stage2(tiny, out: Path, *extra: str) -> list[str]:
    return [LAUNCHER, f"--cache_dir={tiny['stage2_cache']}", f"--model={tiny['flux']}", f"--out_dir={out}",
            *ARGS, *extra]


def run_and_resume(tiny, root: Path, launcher, env: dict | None = None, *extra: str) -> tuple[Path, Path]:
    """An uninterrupted run, and a copy of its folder after step SNAPSHOT resumed in a fresh launch."""
    full, resumed = root / "full", root / "resumed"
    launch(launcher(), stage2(tiny, full, *extra),
           {**(env or {}), "SNAPSHOT_AT": str(SNAPSHOT), "SNAPSHOT_DIR": str(resumed)})
    assert json.loads((resumed / "progress.json").read_text())["step"] == SNAPSHOT
    launch(launcher(), stage2(tiny, resumed, *extra, "--resume=true"), env)
    return full, resumed


def assert_identical(a: Path, b: Path) -> None:
    ta, tb = load_file(a / "styleexpert.safetensors"), load_file(b / "styleexpert.safetensors")
    assert sorted(ta) == sorted(tb)
    assert all(torch.equal(ta[k], tb[k]) for k in ta), [k for k in ta if not torch.equal(ta[k], tb[k])][:3]


@pytest.fixture(scope="module")
def ddp(tiny, tmp_path_factory):
    return run_and_resume(tiny, tmp_path_factory.mktemp("ddp"), torchrun)


@pytest.fixture(scope="module")
def fsdp2(tiny, tmp_path_factory):
    return run_and_resume(tiny, tmp_path_factory.mktemp("fsdp2"), accelerate_fsdp2, {"FSDP_ON_CPU": "1"})


@pytest.mark.slow
def test_epochs_reshuffle_and_ranks_see_disjoint_batches(tiny, tmp_path):
    launch(torchrun(), [str(REPO / "tests/training/epoch_probe.py"), str(tiny["stage2_cache"]), str(tmp_path)])
    ranks = [json.loads((tmp_path / f"epochs.rank{r}.json").read_text()) for r in (0, 1)]
    for rank in ranks:
        assert rank["epoch0"] != rank["epoch1"]  # accelerate's own set_epoch would repeat epoch 0 here
        assert rank["epoch1_skip2"] == rank["epoch1"][2:]  # what a resumed run trains
    for epoch in ("epoch0", "epoch1"):
        items = [sorted(i for batch in rank[epoch] for i in batch) for rank in ranks]
        assert not set(items[0]) & set(items[1]) and len(items[0]) == len(items[1]) == 12  # 24 items / 2 ranks


@pytest.mark.slow
def test_two_process_resume_equals_an_uninterrupted_run(ddp):
    full, resumed = ddp
    assert_identical(full, resumed)
    steps = [r["step"] for r in map(json.loads, (resumed / "metrics.jsonl").read_text().splitlines())]
    assert steps == [1, 2, 3, 4, 5]  # steps 1-2 from before the interruption, 3-5 after


@pytest.mark.slow
def test_fsdp2_clips_matches_ddp_resumes_exactly_and_saves_only_trainable_tensors(fsdp2, ddp):
    full, resumed = fsdp2
    clips = json.loads((full / "clip.rank0.json").read_text())
    assert len(clips) == STEPS and all(c["sharded"] for c in clips)  # the parameters FSDP2 made
    assert all(c["returned"] > c["max"] and c["after"] <= c["max"] * (1 + 1e-4) for c in clips)
    fsdp, ref = load_file(full / "styleexpert.safetensors"), load_file(ddp[0] / "styleexpert.safetensors")
    assert all(torch.allclose(fsdp[k], ref[k], rtol=1e-4, atol=1e-6) for k in ref)
    assert_identical(full, resumed)
    state = torch.load(full / "train_state.pt", weights_only=True)
    assert sorted(state) == ["experts", "optimizer", "position"]
    assert state["experts"] and all(".moe." in k for k in state["experts"])  # no frozen base tensor
    assert set(state["optimizer"]["state"]) == set(state["experts"])  # gathered from the shards, by name


@pytest.mark.slow
def test_deepspeed_zero2_trains_in_bf16_resumes_exactly_and_saves_only_trainable_tensors(tiny, tmp_path):
    pytest.importorskip("deepspeed", reason="DeepSpeed is optional (the training extra); "
                        "test_batches_take_the_trainable_weights_dtype checks its dtype contract without it")
    full, resumed = run_and_resume(tiny, tmp_path, accelerate_deepspeed, {"DS_ACCELERATOR": "cpu"},
                                   "--mixed_precision=bf16")
    assert_identical(full, resumed)
    assert any(t.abs().sum() > 0 for k, t in load_file(full / "styleexpert.safetensors").items() if k.endswith(".B"))
    model_states = full / "accelerate_state" / "pytorch_model" / "mp_rank_00_model_states.pt"
    module = torch.load(model_states, weights_only=False)["module"]  # DeepSpeed's own pickle, from this test
    assert module and all(".moe." in k for k in module)  # no frozen base tensor


def test_batches_take_the_trainable_weights_dtype(tiny):
    """DeepSpeed casts the model to bf16 and turns autocast off: fp32 batches must be cast to it."""
    cfg = Stage2Config(cache_dir=str(tiny["stage2_cache"]), model=str(tiny["flux"]), num_experts=4, rank=2,
                       gradient_checkpointing=False)
    data = TripletCache(cfg.cache_dir)
    model = build_model(cfg, data.cond_dim)[0].to(torch.bfloat16)
    batch = data.collate([data[i] for i in range(2)])
    loss = micro_batch_loss(model, model.style_context, batch, cfg, rank=0, micro=0, dtype=torch.bfloat16,
                            guidance=1.0)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad.dtype == torch.bfloat16 for p in model.parameters() if p.requires_grad)
    with pytest.raises(RuntimeError, match="dtype"):  # what the run crashed with before
        micro_batch_loss(model, model.style_context, batch, cfg, rank=0, micro=0, dtype=torch.float32, guidance=1.0)


def test_a_launch_that_asked_for_fsdp_and_got_plain_processes_is_refused(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what accelerate launch sets for accelerate_fsdp2.yaml
    monkeypatch.setenv("FSDP_VERSION", "2")
    cfg = Stage2Config(cache_dir=str(tiny["stage2_cache"]), model=str(tiny["flux"]), out_dir=str(tmp_path),
                       device="cpu")
    with pytest.raises(ConfigError, match="asked for fsdp2"):
        start(cfg)
