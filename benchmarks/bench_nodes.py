"""The pack on real ComfyUI: a sampler loop per variant, apply cost with ComfyUI's weight patching.

    COMFYUI_ROOT=~/.cache/comfyui/ComfyUI python -m benchmarks.bench_nodes [--hidden 256 --depth 2 --single 4]

A random-weight Flux built through comfy.supported_models, one reference image (Kontext's
"index" layout), a StyleExpert checkpoint on every attention projection (16 experts, rank 8,
top-2 + shared) and the variants users choose between:
  unpatched | merge (Apply, mode merge) | dynamic (Apply, mode dynamic) |
  lora-24 (the same style baked into a rank-24 LoRA, loaded by the stock LoraLoaderModelOnly).
Each round runs the variants in rotated order; per variant it times
  apply:   the node (Apply, or the stock LoRA loader),
  load:    comfy.model_management.load_models_gpu, where ComfyUI patches weights (and backs them up),
  step:    the steps of comfy.sample.sample (euler, cfg 1), the first step apart (dynamic folds then),
  restore: ComfyUI's unpatch_model, which puts the backed-up weights back (they come from the offload
           device, so they are then moved back onto the load device),
and reports medians with min..max over the rounds, the weight backups ComfyUI kept, peak device
memory (CUDA), and kernel launches and host syncs of one model call (torch.profiler, CUDA).
`python -m benchmarks.bench_gpu` runs it at full Flux size on a GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from importlib import import_module
from pathlib import Path

import torch

from .timing import interleaved, machine_line, ratio, spread, table

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("unpatched", "merge", "dynamic", "lora-24")
LAUNCHES = {"cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx"}
SYNCS = {"cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy"}


def arguments(defaults: dict | None = None, argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=256, help="Flux hidden size (3072 for FLUX.1)")
    p.add_argument("--depth", type=int, default=2, help="double blocks (19 for FLUX.1)")
    p.add_argument("--single", type=int, default=4, help="single blocks (38 for FLUX.1)")
    p.add_argument("--image", type=int, default=256, help="image side in pixels; one reference of the same size")
    p.add_argument("--text-tokens", type=int, default=128)
    p.add_argument("--steps", type=int, default=3, help="sampler steps per round (the first is reported apart)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=0,
                   help="also time N model calls per variant interleaved call by call, on one model copy per "
                        "variant (4x the model's memory)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 keeps torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    p.set_defaults(**(defaults or {}))
    return p.parse_args(argv)


def import_comfyui(device: str):
    comfy_root = Path(os.environ.get("COMFYUI_ROOT", Path.home() / ".cache/comfyui/ComfyUI"))
    if not (comfy_root / "main.py").is_file():
        sys.exit(f"no ComfyUI checkout at {comfy_root}: set COMFYUI_ROOT")
    sys.path.insert(0, str(comfy_root))  # a script, not the pack: ComfyUI's modules must win
    from comfy.cli_args import args
    args.cpu = device == "cpu"
    return import_module("nodes")  # ComfyUI's nodes.py


def build_flux(a, dtype):
    """A ModelPatcher over a random-weight Flux, built on the device (as after a first load)."""
    import comfy.model_patcher
    import comfy.supported_models
    config = comfy.supported_models.Flux(dict(
        image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096,
        hidden_size=a.hidden, mlp_ratio=4.0, num_heads=a.hidden // 128 or 1, depth=a.depth,
        depth_single_blocks=a.single, axes_dim=axes_dim(a.hidden), theta=10000, patch_size=2, qkv_bias=True,
        guidance_embed=True))
    config.set_inference_dtype(dtype, None)
    base = config.get_model({}, device=torch.device(a.device))
    with torch.no_grad():
        for name, p in base.named_parameters():
            p.copy_(torch.ones_like(p) if name.endswith("scale") else torch.randn_like(p) * 0.02)
    offload = torch.device("cpu")  # as ComfyUI sets it up on a GPU: backups go to host memory
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device(a.device), offload_device=offload)


def axes_dim(hidden: int) -> list[int]:
    """RoPE axes for 128-wide heads (FLUX.1's 16/56/56), or one head when the model is narrower."""
    head = min(hidden, 128)
    side = (head - head // 8) // 2 // 2 * 2
    return [head - 2 * side, side, side]


def write_files(a, tmp: Path) -> tuple[str, "torch.Tensor"]:
    """A StyleExpert checkpoint (bf16, every attention projection) and a style latent; returns the name."""
    sys.path.insert(1, str(ROOT))
    from styleexpert_core import ExpertTensors, FluxShape, MoEConfig, StyleExpertCheckpoint, save_native
    from styleexpert_core.keys import attention_projection_modules, block_linear_features
    shape = FluxShape(a.hidden, a.depth, a.single)
    config = MoEConfig()
    layers = {}
    for m in attention_projection_modules(shape):
        i, o = block_linear_features(m, shape)
        layers[m] = ExpertTensors(torch.randn(16, 8, i) / 8, torch.randn(16, o, 8) * 0.01, torch.randn(1, 8, i) / 8,
                                  torch.randn(1, o, 8) * 0.01, torch.randn(16, 3072))
    save_native(StyleExpertCheckpoint(config, layers), tmp / "bench.safetensors", dtype=torch.bfloat16)
    return "bench.safetensors", torch.randn(1, 3072)


class Bench:
    """ComfyUI in process with the pack loaded, the model, the files and the sampler inputs."""

    def __init__(self, a) -> None:
        self.a = a
        self.dtype = torch.float32 if a.dtype == "fp32" else torch.bfloat16
        self.nodes = import_comfyui(a.device)
        import comfy.model_management as mm
        import folder_paths
        from comfy_api.latest import io
        self.mm = mm
        tmp = Path(tempfile.mkdtemp())
        for kind in ("styleexpert", "loras"):
            folder_paths.add_model_folder_path(kind, str(tmp))
        asyncio.run(self.nodes.load_custom_node(str(ROOT)))
        self.pack = {k: v.PREPARE_CLASS_CLONE({io.Hidden.unique_id: "1"}) for k, v in self.nodes.NODE_CLASS_MAPPINGS.items()
                     if k.startswith("StyleExpert")}
        torch.manual_seed(0)
        self.model = build_flux(a, self.dtype)
        name, latent = write_files(a, tmp)
        self.expert = self.pack["StyleExpertLoader"].execute(ckpt_name=name).result[0]
        self.style = import_module(type(self.expert).__module__).StyleLatent(latent, self.expert.encoder_id)
        self.lora = bake_lora(self.expert, latent, tmp)
        side = a.image // 8
        g = torch.Generator().manual_seed(1)
        self.latent = torch.zeros(1, 16, side, side)
        self.noise = torch.randn(1, 16, side, side, generator=g)
        ref = torch.randn(1, 16, side, side, generator=g)
        self.positive = [[torch.randn(1, a.text_tokens, 4096, generator=g),
                          {"pooled_output": torch.randn(1, 768, generator=g), "guidance": 2.5,
                           "reference_latents": [ref], "reference_latents_method": "index"}]]

    def variant(self, name: str, model=None):
        """The node call that makes `name`'s MODEL (from `model`, by default the shared one)."""
        model = self.model if model is None else model
        if name == "unpatched":
            return model
        if name == "lora-24":
            return self.nodes.LoraLoaderModelOnly().load_lora_model_only(model, self.lora, 1.0)[0]
        return self.pack["StyleExpertApply"].execute(model=model, styleexpert=self.expert, style=self.style,
                                                     mode=name).result[0]

    def sync(self) -> None:
        if self.a.device == "cuda":
            torch.cuda.synchronize()

    def sample(self, patcher, steps: int) -> list[float]:
        """comfy.sample.sample; the seconds of each step (the sampler's callback marks them)."""
        import comfy.sample
        marks = [time.perf_counter()]

        def step_done(*_):
            self.sync()
            marks.append(time.perf_counter())

        with torch.inference_mode():
            comfy.sample.sample(patcher, self.noise, steps, 1.0, "euler", "simple", self.positive, self.positive,
                                self.latent, callback=step_done, disable_pbar=True, seed=0)
        return [b - a for a, b in zip(marks, marks[1:])]


def bake_lora(expert, latent, folder: Path) -> str:
    """The style folded exactly as merge mode folds it, written as a plain rank-24 LoRA file."""
    formats = import_module(f"{type(expert).__module__.rsplit('.', 2)[0]}.styleexpert_core.formats")
    formats.bake_style(expert.checkpoint, latent, folder / "bench_lora.safetensors", name="bench",
                       dtype=torch.bfloat16)
    return "bench_lora.safetensors"


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def restore_weights(patcher) -> None:
    """ComfyUI's unpatch (the backups, kept on the offload device, replace the patched weights),
    then those weights back onto the load device: the least a switch away from the variant costs."""
    patcher.unpatch_model()
    patcher.model.to(patcher.load_device)


def turn(bench: Bench, name: str, steps: int) -> dict[str, float]:
    """One variant, as a user meets it: make the MODEL, load (patch) it, sample, restore the weights."""
    cuda = bench.a.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else 0
    marks = [time.perf_counter()]
    patcher = bench.variant(name)
    marks.append(time.perf_counter())
    bench.mm.load_models_gpu([patcher] + patcher.get_nested_additional_models())
    bench.sync()
    marks.append(time.perf_counter())
    backups = tensor_bytes(b.weight for b in patcher.backup.values())
    step_seconds = bench.sample(patcher, steps)
    restore = time.perf_counter()
    restore_weights(patcher)
    bench.sync()
    done = time.perf_counter()
    return {"apply": marks[1] - marks[0], "load": marks[2] - marks[1], "restore": done - restore,
            "first": step_seconds[0], "step": statistics.mean(step_seconds[1:]), "backups": backups,
            "peak": (torch.cuda.max_memory_allocated() - before) if cuda else float("nan")}


def model_call(bench: Bench, patcher):
    """One model call (a cfg-1 sampling step without the sampler) of a loaded patcher."""
    from comfy import patcher_extension
    device, model = bench.a.device, patcher.model
    options = {"wrappers": {}}
    patcher_extension.merge_nested_dicts(options["wrappers"], patcher.wrappers, copy_dict1=False)
    context, cond = (t.to(device) if torch.is_tensor(t) else t for t in bench.positive[0])
    ref = model.process_latent_in(cond["reference_latents"][0]).to(device)
    x, sigma, guidance = (bench.noise.to(device), torch.full((1,), 0.5, device=device),
                          torch.full((1,), 2.5, device=device))

    def call():
        with torch.inference_mode():
            model.apply_model(x, sigma, c_crossattn=context, y=cond["pooled_output"].to(device), guidance=guidance,
                              transformer_options=options, ref_latents=[ref], ref_latents_method="index")
    return call


def profile_call(bench: Bench, name: str) -> tuple[int, int]:
    """(kernel launches, host syncs) of one model call (CUDA); on a CPU, (aten ops, 0)."""
    from torch.profiler import ProfilerActivity, profile
    patcher = bench.variant(name)
    bench.mm.load_models_gpu([patcher] + patcher.get_nested_additional_models())
    call = model_call(bench, patcher)
    call()  # dynamic mode folds its style in the first call; count a steady one
    bench.sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if bench.a.device == "cuda" else [])
    with profile(activities=activities) as prof:
        call()
        bench.sync()
    restore_weights(patcher)
    names = [e.name for e in prof.events()]
    if bench.a.device != "cuda":
        return sum(n.startswith("aten::") for n in names), 0
    return sum(n in LAUNCHES for n in names), sum(n in SYNCS for n in names)


def interleaved_calls(bench: Bench) -> dict[str, list[float]]:
    """Model calls of the four variants, each on its own copy of the model (same weights) so that
    all stay loaded at once, interleaved call by call in rotated order: the fairest ratio on a busy
    machine."""
    torch.manual_seed(0)
    patchers = {name: bench.variant(name, build_flux(bench.a, bench.dtype)) for name in VARIANTS}
    bench.mm.load_models_gpu([m for p in patchers.values() for m in [p] + p.get_nested_additional_models()])
    return interleaved({name: model_call(bench, p) for name, p in patchers.items()}, bench.a.calls, bench.sync)


def report(bench: Bench, results: dict, counts: dict) -> str:
    a = bench.a
    rows = []
    base = results["unpatched"]["step"]
    for name in VARIANTS:
        r = results[name]
        launches, syncs = counts[name]
        rows.append([name, spread(r["apply"]), spread(r["load"]), spread(r["restore"]), spread(r["first"]),
                     spread(r["step"]), ratio(r["step"], base), f"{statistics.median(r['backups']) / 2**20:.2f}",
                     "-" if a.device != "cuda" else f"{statistics.median(r['peak']) / 2**20:.0f}",
                     str(launches), "-" if a.device != "cuda" else str(syncs)])
    tokens = (a.image // 16) ** 2
    head = (f"{machine_line(a.device)}\n"
            f"Flux hidden {a.hidden}, {a.depth}+{a.single} blocks, {a.device} {a.dtype}, {a.image}x{a.image} "
            f"({tokens} tokens) + one reference ({tokens}) + {a.text_tokens} text tokens; "
            f"{len(bench.expert.checkpoint.layers)} expert layers; {a.rounds} rounds x {a.steps} euler steps, "
            "variants in rotated order; times in ms, median (min..max) over rounds\n")
    launches = "kernel launches / call" if a.device == "cuda" else "aten ops / call (cpu)"
    return head + table(["variant", "apply", "load (patch)", "restore", "first step", "step", "step / unpatched",
                         "weight backups MB", "peak device MB", launches, "host syncs / call"], rows)


def main(defaults: dict | None = None, argv=None) -> None:
    a = arguments(defaults, argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    bench = Bench(a)
    for name in VARIANTS:  # warm-up round, not reported: first loads, allocator, kernels
        turn(bench, name, 2)
    results = {name: {} for name in VARIANTS}
    for i in range(a.rounds):
        for name in VARIANTS[i % len(VARIANTS):] + VARIANTS[:i % len(VARIANTS)]:
            for key, value in turn(bench, name, a.steps).items():
                results[name].setdefault(key, []).append(value)
    counts = {name: profile_call(bench, name) for name in VARIANTS}
    print(report(bench, results, counts))
    if a.calls:
        calls = interleaved_calls(bench)
        print(f"\nmodel calls interleaved call by call, one model copy per variant, {a.calls} rounds (ms):")
        print(table(["variant", "model call", "call / unpatched"],
                    [[name, spread(t), ratio(t, calls["unpatched"])] for name, t in calls.items()]))


if __name__ == "__main__":
    main()
