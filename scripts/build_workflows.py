"""Writes the example workflows in workflows/ (ComfyUI UI format, as the editor saves them).

    python scripts/build_workflows.py

The graphs are described here once; the JSON files are generated, committed, and checked by
the integration tests (converted to API format against a live server, and opened in the
real frontend).
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "workflows"
KONTEXT = "flux1-kontext-dev.safetensors"
SIGLIP = "siglip_vision_patch14_384.safetensors"
CHECKPOINT = "styleexpert.safetensors"
PROMPT = "Restyle the image in the style of the reference, keeping its layout and subject."

# type -> (socket inputs [(name, type)], outputs [(name, type)])
SIGNATURES = {
    "UNETLoader": ([], [("MODEL", "MODEL")]),
    "DualCLIPLoader": ([], [("CLIP", "CLIP")]),
    "VAELoader": ([], [("VAE", "VAE")]),
    "CLIPVisionLoader": ([], [("CLIP_VISION", "CLIP_VISION")]),
    "LoadImage": ([], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "FluxKontextImageScale": ([("image", "IMAGE")], [("IMAGE", "IMAGE")]),
    "ImageBatch": ([("image1", "IMAGE"), ("image2", "IMAGE")], [("IMAGE", "IMAGE")]),
    "CLIPTextEncode": ([("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")]),
    "FluxGuidance": ([("conditioning", "CONDITIONING")], [("CONDITIONING", "CONDITIONING")]),
    "ConditioningZeroOut": ([("conditioning", "CONDITIONING")], [("CONDITIONING", "CONDITIONING")]),
    "VAEEncode": ([("pixels", "IMAGE"), ("vae", "VAE")], [("LATENT", "LATENT")]),
    "RepeatLatentBatch": ([("samples", "LATENT")], [("LATENT", "LATENT")]),
    "KSampler": ([("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                  ("latent_image", "LATENT")], [("LATENT", "LATENT")]),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")]),
    "SaveImage": ([("images", "IMAGE")], []),
    "PreviewImage": ([("images", "IMAGE")], []),
    "PreviewAny": ([("source", "*")], []),
    "LoraLoaderModelOnly": ([("model", "MODEL")], [("MODEL", "MODEL")]),
    "Note": ([], []),
    "StyleExpertLoader": ([], [("STYLEEXPERT", "STYLEEXPERT")]),
    "StyleExpertEncodeStyle": ([("styleexpert", "STYLEEXPERT"), ("clip_vision", "CLIP_VISION"),
                                ("images", "IMAGE")], [("STYLE_LATENT", "STYLE_LATENT")]),
    "StyleExpertApply": ([("model", "MODEL"), ("styleexpert", "STYLEEXPERT"), ("style", "STYLE_LATENT")],
                         [("MODEL", "MODEL")]),
    "StyleExpertReferenceLatents": ([("model", "MODEL"), ("conditioning", "CONDITIONING"), ("vae", "VAE"),
                                     ("content", "IMAGE"), ("style", "IMAGE"), ("target", "LATENT"),
                                     ("styleexpert", "STYLEEXPERT")],
                                    [("MODEL", "MODEL"), ("CONDITIONING", "CONDITIONING")]),
    "StyleExpertRoutingPreview": ([("styleexpert", "STYLEEXPERT"), ("style", "STYLE_LATENT")],
                                  [("heatmap", "IMAGE"), ("routing", "STRING")]),
    "StyleExpertBlendStyles": ([("style_a", "STYLE_LATENT"), ("style_b", "STYLE_LATENT"),
                                ("style_c", "STYLE_LATENT"), ("style_d", "STYLE_LATENT")],
                               [("STYLE_LATENT", "STYLE_LATENT")]),
    "StyleExpertMetrics": ([("styleexpert", "STYLEEXPERT"), ("clip_vision", "CLIP_VISION"), ("output", "IMAGE"),
                            ("style", "IMAGE"), ("content", "IMAGE")],
                           [("style_similarity", "FLOAT"), ("content_fidelity", "FLOAT"), ("sheet", "IMAGE"),
                            ("aesthetic", "FLOAT")]),
}
OPTIONAL_INPUTS = {("StyleExpertReferenceLatents", "content"), ("StyleExpertReferenceLatents", "style"),
                   ("StyleExpertReferenceLatents", "target"), ("StyleExpertReferenceLatents", "styleexpert"),
                   ("StyleExpertBlendStyles", "style_c"), ("StyleExpertBlendStyles", "style_d"),
                   ("StyleExpertMetrics", "content")}
APPLY_DEFAULTS = ["merge", 1.0, 1.0, 1.0, 1.0, 1.0, 0, "from checkpoint", "from checkpoint"]


class Graph:
    def __init__(self) -> None:
        self.nodes: list[dict] = []
        self.links: list[list] = []

    def add(self, type_: str, widgets: list | None = None, pos=(0, 0), size=(320, 120), title=None) -> int:
        inputs, outputs = SIGNATURES[type_]
        node = {
            "id": len(self.nodes) + 1, "type": type_, "pos": list(pos), "size": list(size), "flags": {},
            "order": len(self.nodes), "mode": 0,
            "inputs": [{"name": n, "type": t, "link": None} for n, t in inputs],
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(outputs)],
            "properties": {"Node name for S&R": type_}, "widgets_values": list(widgets or []),
        }
        for inp in node["inputs"]:
            if (type_, inp["name"]) in OPTIONAL_INPUTS:
                inp["shape"] = 7  # how the frontend draws optional sockets
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node["id"]

    def link(self, src: int, slot: int, dst: int, input_name: str) -> None:
        source, target = self.nodes[src - 1], self.nodes[dst - 1]
        link_id = len(self.links) + 1
        kind = source["outputs"][slot]["type"]
        target_slot = next(i for i, inp in enumerate(target["inputs"]) if inp["name"] == input_name)
        target["inputs"][target_slot]["link"] = link_id
        source["outputs"][slot]["links"].append(link_id)
        self.links.append([link_id, src, slot, dst, target_slot, kind])

    def note(self, text: str, pos=(0, -260)) -> None:
        self.add("Note", [text], pos=pos, size=(520, 200), title="About this workflow")

    def to_json(self) -> dict:
        # Optional inputs left unconnected are simply omitted, as the editor does.
        for node in self.nodes:
            node["inputs"] = [i for i in node["inputs"] if i["link"] is not None or "shape" not in i]
        for link in self.links:  # slots count the inputs that remain
            target = self.nodes[link[3] - 1]
            link[4] = next(i for i, inp in enumerate(target["inputs"]) if inp["link"] == link[0])
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {}, "extra": {"ds": {"scale": 0.7, "offset": [60, 320]}},
                "version": 0.4}


def kontext_base(g: Graph, content_file: str = "content.png"):
    """Loaders, content image, prompt: returns a dict of node ids."""
    n = {}
    n["unet"] = g.add("UNETLoader", [KONTEXT, "default"], pos=(0, 0))
    n["clip"] = g.add("DualCLIPLoader", ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "flux", "default"],
                      pos=(0, 160))
    n["vae"] = g.add("VAELoader", ["ae.safetensors"], pos=(0, 320))
    n["siglip"] = g.add("CLIPVisionLoader", [SIGLIP], pos=(0, 440))
    n["expert"] = g.add("StyleExpertLoader", [CHECKPOINT, "(none)"], pos=(0, 560))
    n["content"] = g.add("LoadImage", [content_file, "image"], pos=(0, 700), size=(320, 320), title="Content image")
    n["scale"] = g.add("FluxKontextImageScale", pos=(360, 700))
    g.link(n["content"], 0, n["scale"], "image")
    n["text"] = g.add("CLIPTextEncode", [PROMPT], pos=(360, 160), size=(400, 160))
    g.link(n["clip"], 0, n["text"], "clip")
    n["guidance"] = g.add("FluxGuidance", [3.5], pos=(800, 160))
    g.link(n["text"], 0, n["guidance"], "conditioning")
    n["negative"] = g.add("ConditioningZeroOut", pos=(800, 300))
    g.link(n["text"], 0, n["negative"], "conditioning")
    return n


def sample_and_save(g: Graph, n: dict, model: tuple[int, int], positive: tuple[int, int], x: int,
                    prefix: str, latent: tuple[int, int] | None = None) -> int:
    """Content latent (or `latent`) -> KSampler (28 steps, cfg 1) -> decode -> save. Returns the decode id."""
    if latent is None:
        enc = g.add("VAEEncode", pos=(x, 700))
        g.link(n["scale"], 0, enc, "pixels")
        g.link(n["vae"], 0, enc, "vae")
        latent = (enc, 0)
    ks = g.add("KSampler", [0, "fixed", 28, 1.0, "euler", "simple", 1.0], pos=(x + 360, 0), size=(320, 260))
    g.link(*model, ks, "model")
    g.link(*positive, ks, "positive")
    g.link(n["negative"], 0, ks, "negative")
    g.link(*latent, ks, "latent_image")
    dec = g.add("VAEDecode", pos=(x + 720, 0))
    g.link(ks, 0, dec, "samples")
    g.link(n["vae"], 0, dec, "vae")
    save = g.add("SaveImage", [prefix], pos=(x + 1080, 0), size=(400, 440))
    g.link(dec, 0, save, "images")
    return dec


def encode_style(g: Graph, n: dict, image_file: str, pos, mode="mean", title="Style image") -> tuple[int, int]:
    img = g.add("LoadImage", [image_file, "image"], pos=pos, size=(320, 320), title=title)
    enc = g.add("StyleExpertEncodeStyle", [mode], pos=(pos[0] + 360, pos[1]))
    g.link(n["expert"], 0, enc, "styleexpert")
    g.link(n["siglip"], 0, enc, "clip_vision")
    g.link(img, 0, enc, "images")
    return enc, img


def apply_and_reference(g: Graph, n: dict, style: int, mode: str, x: int) -> tuple[int, int]:
    apply = g.add("StyleExpertApply", [mode, *APPLY_DEFAULTS[1:]], pos=(x, 0), size=(320, 300))
    g.link(n["unet"], 0, apply, "model")
    g.link(n["expert"], 0, apply, "styleexpert")
    g.link(style, 0, apply, "style")
    # The checkpoint goes to the reference node too, which cuts the text to its training length.
    ref = g.add("StyleExpertReferenceLatents", ["official", "checkpoint's length"], pos=(x, 340))
    g.link(apply, 0, ref, "model")
    g.link(n["expert"], 0, ref, "styleexpert")
    g.link(n["guidance"], 0, ref, "conditioning")
    g.link(n["vae"], 0, ref, "vae")
    g.link(n["scale"], 0, ref, "content")
    return ref, apply


def basic() -> Graph:
    g = Graph()
    n = kontext_base(g)
    style, _ = encode_style(g, n, "style.png", (0, 1060))
    ref, _ = apply_and_reference(g, n, style, "merge", 1160)
    sample_and_save(g, n, (ref, 0), (ref, 1), 1520, "styleexpert/basic")
    g.note("Basic stylisation with StyleExpert on FLUX.1 Kontext.\n\n1. Put flux1-kontext-dev in "
           "models/diffusion_models, SigLIP so400m in models/clip_vision, the StyleExpert file in "
           "models/styleexpert.\n2. Pick a content image and a style image.\n3. The style image is encoded into a "
           "style latent that routes the experts; Apply merges them into the model (mode 'merge').\n"
           "The content image becomes Kontext reference index 1. 28 steps, guidance 3.5, cfg 1 as the paper.")
    return g


def blend() -> Graph:
    g = Graph()
    n = kontext_base(g)
    a, _ = encode_style(g, n, "style.png", (0, 1060), title="Style A")
    b, _ = encode_style(g, n, "style_b.png", (0, 1420), title="Style B")
    mix = g.add("StyleExpertBlendStyles", [0.5, 0.5, 1.0, 1.0], pos=(800, 1200))
    g.link(a, 0, mix, "style_a")
    g.link(b, 0, mix, "style_b")
    ref, _ = apply_and_reference(g, n, mix, "merge", 1160)
    sample_and_save(g, n, (ref, 0), (ref, 1), 1520, "styleexpert/blend")
    g.note("Two styles blended: each style image is encoded, then the latents are interpolated with the "
           "weights on Blend Styles (normalised to sum 1) before routing. Move the weights to slide between "
           "the styles.")
    return g


def inspect() -> Graph:
    g = Graph()
    n = kontext_base(g)
    style, style_img = encode_style(g, n, "style.png", (0, 1060))
    preview = g.add("StyleExpertRoutingPreview", [0, 0, "from checkpoint"], pos=(800, 1060))
    g.link(n["expert"], 0, preview, "styleexpert")
    g.link(style, 0, preview, "style")
    text = g.add("PreviewAny", pos=(1160, 1060), size=(420, 300))
    g.link(preview, 1, text, "source")
    ref, _ = apply_and_reference(g, n, style, "merge", 1160)
    dec = sample_and_save(g, n, (ref, 0), (ref, 1), 1520, "styleexpert/inspect")
    metrics = g.add("StyleExpertMetrics", ["(none)"], pos=(2600, 500))
    g.link(n["expert"], 0, metrics, "styleexpert")
    g.link(n["siglip"], 0, metrics, "clip_vision")
    g.link(dec, 0, metrics, "output")
    g.link(style_img, 0, metrics, "style")
    g.link(n["scale"], 0, metrics, "content")
    g.note("Inspect routing and score the result. Routing Preview draws which experts every layer picks "
           "for the style (rows: layers, first column: the shared expert). Metrics scores the output's "
           "style similarity (StyleExpert encoder space) and content fidelity (SigLIP embedding cosine) "
           "and shows a side-by-side sheet.")
    return g


def dynamic_batch() -> Graph:
    g = Graph()
    n = kontext_base(g)
    s1 = g.add("LoadImage", ["style.png", "image"], pos=(0, 1060), size=(320, 320), title="Style 1")
    s2 = g.add("LoadImage", ["style_b.png", "image"], pos=(0, 1420), size=(320, 320), title="Style 2")
    both = g.add("ImageBatch", pos=(360, 1200))
    g.link(s1, 0, both, "image1")
    g.link(s2, 0, both, "image2")
    enc = g.add("StyleExpertEncodeStyle", ["per image"], pos=(720, 1200))
    g.link(n["expert"], 0, enc, "styleexpert")
    g.link(n["siglip"], 0, enc, "clip_vision")
    g.link(both, 0, enc, "images")
    ref, _ = apply_and_reference(g, n, enc, "dynamic", 1160)
    latent = g.add("VAEEncode", pos=(1160, 700))
    g.link(n["scale"], 0, latent, "pixels")
    g.link(n["vae"], 0, latent, "vae")
    repeat = g.add("RepeatLatentBatch", [2], pos=(1160, 820))
    g.link(latent, 0, repeat, "samples")
    sample_and_save(g, n, (ref, 0), (ref, 1), 1520, "styleexpert/dynamic", latent=(repeat, 0))
    g.note("One batch, a different style per sample (dynamic mode). Encode Style with mode 'per image' gives one "
           "latent per style image; Apply in mode 'dynamic' routes sample i of the batch by style i "
           "(mod the number of styles) at every forward, so one sampling run renders both styles.")
    return g


def baked_lora() -> Graph:
    g = Graph()
    n = kontext_base(g)
    lora = g.add("LoraLoaderModelOnly", ["styleexpert_baked.safetensors", 1.0], pos=(400, 0))
    g.link(n["unet"], 0, lora, "model")
    ref = g.add("StyleExpertReferenceLatents", ["official", "checkpoint's length"], pos=(800, 400))
    g.link(lora, 0, ref, "model")
    g.link(n["guidance"], 0, ref, "conditioning")
    g.link(n["vae"], 0, ref, "vae")
    g.link(n["scale"], 0, ref, "content")
    sample_and_save(g, n, (ref, 0), (ref, 1), 1160, "styleexpert/baked")
    g.note("A style baked into a plain LoRA, loaded by the stock LoRA loader (works with any Flux LoRA "
           "tooling, fp8 and GGUF models). Make the file once with the 'StyleExpert Bake LoRA' node "
           "(Load StyleExpert + Encode Style -> Bake LoRA), or on the command line:\n\n"
           "python -m styleexpert_core bake --checkpoint models/styleexpert/styleexpert.safetensors "
           "--style-latent style.safetensors -o models/loras/styleexpert_baked.safetensors")
    return g


WORKFLOWS = {"styleexpert_basic": basic, "styleexpert_blend_two_styles": blend,
             "styleexpert_routing_and_metrics": inspect, "styleexpert_dynamic_batch": dynamic_batch,
             "styleexpert_baked_lora": baked_lora}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, build in WORKFLOWS.items():
        (OUT / f"{name}.json").write_text(json.dumps(build().to_json(), indent=1) + "\n")
        print(f"wrote workflows/{name}.json")


if __name__ == "__main__":
    main()
