"""`styleexpert` (or `python -m styleexpert_core`): inspect, convert the official release, bake a style into a
LoRA, make a preview card for the Model Library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from .config import ROUTING_PRECISIONS
from .errors import InputError, StyleExpertError
from .preview_card import checkpoint_card, preview_path
from .safe_write import write_atomically
from .formats import bake_style, load_checkpoint, load_official, read_safetensors, save_native
from .style import Strengths

log = logging.getLogger("styleexpert")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("inspect", help="summarise a checkpoint (native or official)")
    s.add_argument("file", help="native .safetensors, official MoE .safetensors or official projector file")
    s.add_argument("--projector", help="official projector file to read alongside an official MoE file")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")

    s = sub.add_parser("convert-official", help="official release (MoE + projector) -> one native file")
    s.add_argument("--moe", required=True, help="official MoE file (<module>.lora_layer.* keys)")
    s.add_argument("--encoder", help="official style projector file (.safetensors, or .pt state dict)")
    s.add_argument("--top-k", type=int, default=2, help="routed experts per layer (official: 2)")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--force", action="store_true", help="overwrite an existing output file")

    s = sub.add_parser("bake", help="fold one style into a plain Flux LoRA for any LoRA loader")
    s.add_argument("--checkpoint", required=True, help="native file or official MoE file")
    s.add_argument("--style-latent", required=True,
                   help="safetensors file with one tensor 'style_latent' of shape [cond_dim] or [1, cond_dim]")
    s.add_argument("-o", "--output", required=True, help="LoRA file to write (.safetensors)")
    s.add_argument("--strength", type=float, default=1.0, help="multiplies the whole delta (default 1)")
    s.add_argument("--shared-strength", type=float, default=1.0, help="weight of the shared expert (default 1)")
    s.add_argument("--routed-strength", type=float, default=1.0, help="weight of the routed experts (default 1)")
    s.add_argument("--double-blocks", type=float, default=1.0, help="extra factor for double-stream blocks")
    s.add_argument("--single-blocks", type=float, default=1.0, help="extra factor for single-stream blocks")
    s.add_argument("--alignment", choices=("official", "paper"), help="override the checkpoint's score alignment")
    s.add_argument("--top-k", type=int, help="override the number of routed experts")
    s.add_argument("--routing-precision", choices=ROUTING_PRECISIONS,
                   help="override the precision the router picks experts in (keep the checkpoint's)")
    s.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="tensor dtype of the LoRA file")
    s.add_argument("--force", action="store_true", help="overwrite an existing output file")
    s = sub.add_parser("preview", help="write a preview card <name>.preview.png beside a checkpoint, for "
                                       "ComfyUI's Model Library")
    s.add_argument("file", help="native .safetensors or official MoE file")
    s.add_argument("--projector", help="official projector file to read alongside an official MoE file")
    s.add_argument("-o", "--output", help="PNG to write (default: <file without extension>.preview.png beside it)")
    s.add_argument("--force", action="store_true", help="overwrite an existing preview")
    return p


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _check_output(path: str, force: bool, inputs: tuple[str | None, ...]) -> Path:
    """The output path, refused when it is a folder or one of the inputs (whatever the flags:
    --force must never destroy what the command reads)."""
    out = Path(path)
    for given in filter(None, inputs):
        if _same_file(out, Path(given)):
            raise StyleExpertError(f"the output {out} is also an input ({given}); writing it would destroy "
                                   "the input. Choose another output file.")
    if out.is_dir():
        raise StyleExpertError(f"the output {out} is a folder; give the name of the file to write.")
    if out.exists() and not force:
        raise StyleExpertError(f"{out} exists; pass --force to overwrite it.")
    if not out.parent.is_dir():
        raise StyleExpertError(f"output folder {out.parent} does not exist.")
    return out


def read_style_latent(path: str) -> torch.Tensor:
    tensors, _ = read_safetensors(path)
    if set(tensors) != {"style_latent"}:
        raise InputError(f"{path}: expected exactly one tensor named 'style_latent', found {sorted(tensors)}.")
    return tensors["style_latent"].float()


def _format_summary(summary: dict) -> str:
    lines = [f"source: {summary['info']['source']}   base model: {summary['info']['base_model']}   "
             f"key naming: {summary['info']['module_naming']}   style tokens: {summary['info']['style_token_concat']}"]
    if "moe" in summary:
        m = summary["moe"]
        g = summary["layer_groups"]
        lines.append(f"experts: {m['num_experts']} x rank {m['rank']}, top_k {m['top_k']} + 1 shared, "
                     f"cond_dim {m['cond_dim']}, scale {m['scale']:g} ({m['scale_rule']}), alignment {m['alignment']}, "
                     f"routing in {m['routing_precision']}")
        lines.append(f"layers: {summary['layers']} ({g['double_blocks']} in double blocks, {g['single_blocks']} in "
                     f"single blocks, {g['other']} other), {summary['parameters'] / 1e6:.1f} M parameters, "
                     f"folds to rank {m['folded_rank']} per style")
    else:
        lines.append("experts: none (projector-only file)")
    if "projector" in summary:
        p = summary["projector"]
        lines.append(f"style projector: SigLIP layers {p['layers']}, {p['num_tokens']} tokens x {p['width']} -> "
                     f"{len(p['layers'])} x {p['style_tokens']} x {p['out_dim']} = "
                     f"{len(p['layers']) * p['style_tokens'] * p['out_dim']}-d style latent")
    else:
        lines.append("style projector: none")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.command == "inspect":
        summary = load_checkpoint(args.file, args.projector).summary()
        print(json.dumps(summary, indent=2) if args.json else _format_summary(summary))
    elif args.command == "convert-official":
        out = _check_output(args.output, args.force, (args.moe, args.encoder))
        save_native(load_official(args.moe, args.encoder, top_k=args.top_k), out)
        print(f"wrote {out}")
    elif args.command == "bake":
        out = _check_output(args.output, args.force, (args.checkpoint, args.style_latent))
        strengths = Strengths(args.strength, args.shared_strength, args.routed_strength, args.double_blocks,
                              args.single_blocks)
        layers = bake_style(load_checkpoint(args.checkpoint), read_style_latent(args.style_latent), out,
                            name=Path(args.checkpoint).name, strengths=strengths, alignment=args.alignment,
                            top_k=args.top_k, routing_precision=args.routing_precision, dtype=DTYPES[args.dtype])
        print(f"wrote {out} ({layers} layers)")
    elif args.command == "preview":
        out = _check_output(args.output or str(preview_path(args.file)), args.force, (args.file, args.projector))
        card = checkpoint_card(load_checkpoint(args.file, args.projector), Path(args.file).name)
        write_atomically(out, lambda tmp: card.save(tmp, format="PNG"))
        print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None, prog: str = "styleexpert") -> int:
    """The `styleexpert` console script (pyproject [project.scripts]) and `python -m styleexpert_core`."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # CLI entry point only
    args = _parser(prog).parse_args(argv)
    try:
        return run(args)
    except StyleExpertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
