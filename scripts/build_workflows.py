"""Writes the example workflows in example_workflows/ (ComfyUI UI format, as the editor saves them).

    python scripts/build_workflows.py

ComfyUI lists the JSON files of a pack's example_workflows/ folder under Workflow -> Browse
Templates, titled by file name, with `<name>.jpg` beside a file as its thumbnail
(scripts/render_workflow_images.py makes those from the real frontend). The graphs are described
here once, one function per workflow (add one to WORKFLOWS for a new template); the JSON files are
generated, committed, and checked by the tests (laid out without overlaps in the real frontend,
converted to API format and run on a live server).

Loader nodes carry `properties.models` ({name, url, directory}) for the files they name, so the
frontend's missing-models dialog offers the download.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "example_workflows"
KONTEXT = "flux1-kontext-dev.safetensors"
SIGLIP = "sigclip_vision_patch14_384.safetensors"
CHECKPOINT = "styleexpert.safetensors"
BAKED_LORA = "styleexpert_baked_00001_.safetensors"  # what Bake writes first: numbered like ComfyUI's save nodes
CONTENT, STYLE_A, STYLE_B = "styleexpert_content.png", "styleexpert_style_a.png", "styleexpert_style_b.png"
PROMPT = "Restyle the image in the style of the reference, keeping its layout and subject."

# Where each file the loaders name comes from (checked against ComfyUI's own Kontext template and
# the repos' file lists); the StyleExpert checkpoint and the baked LoRA are made locally, so they have none.
HF = "https://huggingface.co"
MODEL_FILES = {
    KONTEXT: (f"{HF}/black-forest-labs/FLUX.1-Kontext-dev/resolve/main/{KONTEXT}", "diffusion_models"),
    "clip_l.safetensors": (f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors",
                           "text_encoders"),
    "t5xxl_fp8_e4m3fn.safetensors": (f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/"
                                     "t5xxl_fp8_e4m3fn.safetensors", "text_encoders"),
    "ae.safetensors": (f"{HF}/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors",
                       "vae"),
    SIGLIP: (f"{HF}/Comfy-Org/sigclip_vision_384/resolve/main/{SIGLIP}", "clip_vision"),
}

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
    "StyleExpertBakeLoRA": ([("styleexpert", "STYLEEXPERT"), ("style", "STYLE_LATENT")],
                            [("lora_name", "STRING")]),
    "StyleExpertStylize": ([("model", "MODEL"), ("clip_vision", "CLIP_VISION"), ("vae", "VAE"),
                            ("conditioning", "CONDITIONING"), ("content", "IMAGE"), ("style", "IMAGE")],
                           [("MODEL", "MODEL"), ("CONDITIONING", "CONDITIONING"), ("LATENT", "LATENT")]),
}
OPTIONAL_INPUTS = {("StyleExpertReferenceLatents", "content"), ("StyleExpertReferenceLatents", "style"),
                   ("StyleExpertReferenceLatents", "target"), ("StyleExpertReferenceLatents", "styleexpert"),
                   ("StyleExpertBlendStyles", "style_c"), ("StyleExpertBlendStyles", "style_d"),
                   ("StyleExpertMetrics", "content")}
APPLY_DEFAULTS = ["merge", 1.0, 1.0, 1.0, 1.0, 1.0, 0, "from checkpoint", "from checkpoint"]
# filename, strength, overwrite, then the optional strength and routing overrides at their defaults
BAKE_DEFAULTS = ["styleexpert_baked", 1.0, False, 1.0, 1.0, 1.0, 1.0, 0, "from checkpoint", "from checkpoint"]

# Heights of the node bodies (the frontend grows a node to fit its widgets, never shrinks it):
# at least what frontend 1.27.10 computes, so the stacked layout below holds in the real editor.
HEIGHTS = {"LoadImage": 330, "CLIPTextEncode": 150, "KSampler": 262, "SaveImage": 420, "StyleExpertApply": 360,
           "StyleExpertReferenceLatents": 220, "StyleExpertEncodeStyle": 110, "StyleExpertBakeLoRA": 298,
           "StyleExpertMetrics": 170, "StyleExpertRoutingPreview": 320, "PreviewAny": 240,
           "StyleExpertBlendStyles": 200, "DualCLIPLoader": 130, "StyleExpertLoader": 120, "UNETLoader": 82,
           "LoraLoaderModelOnly": 90, "StyleExpertStylize": 250}
DEFAULT_HEIGHT = 80
WIDTH = 340
TITLE = 30  # the node title bar sits above `pos`
GAP = 30  # between stacked nodes
COLUMN = 420  # column pitch: node width plus room for the group padding and the links
GROUP_PAD, GROUP_TITLE = 16, 44
COLOURS = {"models": "#3f789e", "input": "#8A8", "style": "#a1309b", "expert": "#b06634", "sample": "#8AA",
           "inspect": "#88A", "bake": "#b58b2a"}
MUTED = 2  # node mode "never": left out of the prompt until the user unmutes it


class Graph:
    def __init__(self) -> None:
        self.nodes: list[dict] = []
        self.links: list[list] = []
        self.groups: list[dict] = []

    def add(self, type_: str, widgets: list | None = None, pos=(0, 0), size=(WIDTH, DEFAULT_HEIGHT),
            title=None) -> int:
        inputs, outputs = SIGNATURES[type_]
        properties = {"Node name for S&R": type_}
        models = [{"name": v, "url": MODEL_FILES[v][0], "directory": MODEL_FILES[v][1]}
                  for v in widgets or [] if isinstance(v, str) and v in MODEL_FILES]
        if models:
            properties["models"] = models
        node = {
            "id": len(self.nodes) + 1, "type": type_, "pos": list(pos), "size": list(size), "flags": {},
            "order": len(self.nodes), "mode": 0,
            "inputs": [{"name": n, "type": t, "link": None} for n, t in inputs],
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(outputs)],
            "properties": properties, "widgets_values": list(widgets or []),
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

    def group(self, title: str, ids: list[int], colour: str) -> None:
        """A group framing the nodes `ids` (title bars included)."""
        boxes = [(n["pos"][0], n["pos"][1] - TITLE, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
                 for n in self.nodes if n["id"] in ids]
        x0, y0 = min(b[0] for b in boxes) - GROUP_PAD, min(b[1] for b in boxes) - GROUP_TITLE - GROUP_PAD
        x1, y1 = max(b[2] for b in boxes) + GROUP_PAD, max(b[3] for b in boxes) + GROUP_PAD
        self.groups.append({"id": len(self.groups) + 1, "title": title, "bounding": [x0, y0, x1 - x0, y1 - y0],
                            "color": colour, "font_size": 24, "flags": {}})

    def mute(self, ids: list[int]) -> None:
        for node_id in ids:
            self.nodes[node_id - 1]["mode"] = MUTED

    def to_json(self) -> dict:
        # Optional inputs left unconnected are simply omitted, as the editor does.
        for node in self.nodes:
            node["inputs"] = [i for i in node["inputs"] if i["link"] is not None or "shape" not in i]
        for link in self.links:  # slots count the inputs that remain
            target = self.nodes[link[3] - 1]
            link[4] = next(i for i, inp in enumerate(target["inputs"]) if inp["link"] == link[0])
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": self.groups, "config": {},
                "extra": {"ds": {"scale": 0.65, "offset": [60, 120]}}, "version": 0.4}


class Column:
    """Stacks nodes top to bottom at one x (the frame's column `index`), so none overlap."""

    TOP = 100  # below the notes row

    def __init__(self, graph: Graph, index: int, y: int = TOP) -> None:
        self.graph, self.x, self.y = graph, index * COLUMN, y

    def add(self, type_: str, widgets: list | None = None, title: str | None = None, height: int | None = None,
            width: int = WIDTH) -> int:
        height = height or HEIGHTS.get(type_, DEFAULT_HEIGHT)
        node = self.graph.add(type_, widgets, pos=(self.x, self.y + TITLE), size=(width, height), title=title)
        self.y += TITLE + height + GAP
        return node


def note(g: Graph, text: str, columns: int = 2) -> None:
    """The workflow's explanation, in a row above the groups."""
    g.add("Note", [text], pos=(0, -360), size=(columns * COLUMN - 80, 300), title="About this workflow")


def models(g: Graph, col: Column, kontext: bool = True, loader: bool = True) -> dict:
    """The model loaders (`loader`: the StyleExpert checkpoint's too): returns a dict of node ids."""
    n = {}
    if kontext:
        n["unet"] = col.add("UNETLoader", [KONTEXT, "default"])
    n["clip"] = col.add("DualCLIPLoader", ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "flux", "default"])
    n["vae"] = col.add("VAELoader", ["ae.safetensors"])
    if kontext:
        n["siglip"] = col.add("CLIPVisionLoader", [SIGLIP])
    if kontext and loader:
        n["expert"] = col.add("StyleExpertLoader", [CHECKPOINT, "(none)"])
    return n


def content_and_prompt(g: Graph, n: dict, col: Column) -> None:
    """Content image (scaled to a Kontext resolution) and the prompt, added to `n`."""
    n["content"] = col.add("LoadImage", [CONTENT, "image"], title="Content image")
    n["scale"] = col.add("FluxKontextImageScale")
    g.link(n["content"], 0, n["scale"], "image")
    n["text"] = col.add("CLIPTextEncode", [PROMPT])
    g.link(n["clip"], 0, n["text"], "clip")
    n["guidance"] = col.add("FluxGuidance", [3.5])
    g.link(n["text"], 0, n["guidance"], "conditioning")
    n["negative"] = col.add("ConditioningZeroOut")
    g.link(n["text"], 0, n["negative"], "conditioning")


def kontext_base(g: Graph) -> tuple[dict, list[int], list[int]]:
    """Columns 0 and 1: model loaders and the content/prompt group. Returns the ids and both columns' ids."""
    n = models(g, Column(g, 0))
    model_ids = list(n.values())
    g.group("Models", model_ids, COLOURS["models"])
    content_and_prompt(g, n, Column(g, 1))
    input_ids = [n[k] for k in ("content", "scale", "text", "guidance", "negative")]
    g.group("Content image and prompt", input_ids, COLOURS["input"])
    return n, model_ids, input_ids


def sample_and_save(g: Graph, n: dict, model: tuple[int, int], positive: tuple[int, int], index: int,
                    prefix: str, latent: tuple[int, int] | None = None, muted: bool = False) -> int:
    """Content latent (or `latent`) -> KSampler (28 steps, cfg 1) -> decode -> save, in columns `index`
    and `index`+1. Returns the decode id."""
    col = Column(g, index)
    ids = []
    if latent is None:
        enc = col.add("VAEEncode")
        g.link(n["scale"], 0, enc, "pixels")
        g.link(n["vae"], 0, enc, "vae")
        latent, ids = (enc, 0), [enc]
    ks = col.add("KSampler", [0, "fixed", 28, 1.0, "euler", "simple", 1.0])
    g.link(*model, ks, "model")
    g.link(*positive, ks, "positive")
    g.link(n["negative"], 0, ks, "negative")
    g.link(*latent, ks, "latent_image")
    dec = col.add("VAEDecode")
    g.link(ks, 0, dec, "samples")
    g.link(n["vae"], 0, dec, "vae")
    save = Column(g, index + 1).add("SaveImage", [prefix], width=380)
    g.link(dec, 0, save, "images")
    g.group("Sample and save", ids + [ks, dec, save], COLOURS["sample"])
    return dec


def encode_style(g: Graph, n: dict, image_col: Column, encode_col: Column, image_file: str, mode="mean",
                 title="Style image") -> tuple[int, int]:
    img = image_col.add("LoadImage", [image_file, "image"], title=title)
    enc = encode_col.add("StyleExpertEncodeStyle", [mode])
    g.link(n["expert"], 0, enc, "styleexpert")
    g.link(n["siglip"], 0, enc, "clip_vision")
    g.link(img, 0, enc, "images")
    return enc, img


def apply_and_reference(g: Graph, n: dict, style: int, mode: str, index: int) -> int:
    col = Column(g, index)
    apply = col.add("StyleExpertApply", [mode, *APPLY_DEFAULTS[1:]])
    g.link(n["unet"], 0, apply, "model")
    g.link(n["expert"], 0, apply, "styleexpert")
    g.link(style, 0, apply, "style")
    # The checkpoint goes to the reference node too, which cuts the text to its training length.
    ref = col.add("StyleExpertReferenceLatents", ["official", "checkpoint's length"])
    g.link(apply, 0, ref, "model")
    g.link(n["expert"], 0, ref, "styleexpert")
    g.link(n["guidance"], 0, ref, "conditioning")
    g.link(n["vae"], 0, ref, "vae")
    g.link(n["scale"], 0, ref, "content")
    g.group("StyleExpert", [apply, ref], COLOURS["expert"])
    return ref


def basic() -> Graph:
    g = Graph()
    n, _, _ = kontext_base(g)
    col = Column(g, 2)
    style, img = encode_style(g, n, col, col, STYLE_A)
    g.group("Style reference", [img, style], COLOURS["style"])
    ref = apply_and_reference(g, n, style, "merge", 3)
    sample_and_save(g, n, (ref, 0), (ref, 1), 4, "styleexpert/basic")
    note(g, "Basic stylisation with StyleExpert on FLUX.1 Kontext [dev].\n\n1. Models: the loaders name the files "
         "and their folders; a missing one is offered for download when the workflow opens (FLUX.1 Kontext [dev] "
         "is gated: accept its licence on Hugging Face first, or pick an fp8 repack). The StyleExpert file goes "
         "in models/styleexpert (see the pack's README).\n2. Swap the content and style images for your own.\n"
         "3. The style image becomes a style latent that routes the experts; Apply merges them into the model. "
         "The content image is Kontext's reference. 28 steps, guidance 3.5, cfg 1, as in the paper.", 3)
    return g


def one_node() -> Graph:
    g = Graph()
    n = models(g, Column(g, 0), loader=False)  # Stylize loads the checkpoint itself
    g.group("Models", list(n.values()), COLOURS["models"])
    content_and_prompt(g, n, Column(g, 1))
    g.group("Content image and prompt", [n[k] for k in ("content", "scale", "text", "guidance", "negative")],
            COLOURS["input"])
    col = Column(g, 2)
    img = col.add("LoadImage", [STYLE_A, "image"], title="Style image")
    stylize = col.add("StyleExpertStylize", [CHECKPOINT, 1.0])
    for name, src in (("model", n["unet"]), ("clip_vision", n["siglip"]), ("vae", n["vae"]),
                      ("conditioning", n["guidance"]), ("content", n["scale"]), ("style", img)):
        g.link(src, 0, stylize, name)
    g.group("Style: one node", [img, stylize], COLOURS["expert"])
    sample_and_save(g, n, (stylize, 0), (stylize, 1), 3, "styleexpert/stylize", latent=(stylize, 2))
    note(g, "Stylisation in one node: StyleExpert Stylize loads the checkpoint from models/styleexpert, encodes "
         "the style image, merges the experts into the model and makes the content Kontext's reference; its "
         "MODEL, CONDITIONING and LATENT go straight into the stock KSampler. One strength slider; the "
         "'Stylise an image' template shows the same steps as separate nodes with every control.", 3)
    return g


def blend() -> Graph:
    g = Graph()
    n, _, _ = kontext_base(g)
    images, encoders = Column(g, 2), Column(g, 3)
    a, img_a = encode_style(g, n, images, encoders, STYLE_A, title="Style A")
    b, img_b = encode_style(g, n, images, encoders, STYLE_B, title="Style B")
    mix = encoders.add("StyleExpertBlendStyles", [0.5, 0.5, 1.0, 1.0])
    g.link(a, 0, mix, "style_a")
    g.link(b, 0, mix, "style_b")
    g.group("Two style references, blended", [img_a, img_b, a, b, mix], COLOURS["style"])
    ref = apply_and_reference(g, n, mix, "merge", 4)
    sample_and_save(g, n, (ref, 0), (ref, 1), 5, "styleexpert/blend")
    note(g, "Two styles blended: each style image is encoded, then Blend Styles interpolates the latents with "
         "its weights (normalised to sum 1) before routing. Move the weights to slide from one style to the "
         "other. Models and images as in 'Stylise an image'.", 3)
    return g


def inspect() -> Graph:
    g = Graph()
    n, _, _ = kontext_base(g)
    col = Column(g, 2)
    style, style_img = encode_style(g, n, col, col, STYLE_A)
    g.group("Style reference", [style_img, style], COLOURS["style"])
    ref = apply_and_reference(g, n, style, "merge", 3)
    dec = sample_and_save(g, n, (ref, 0), (ref, 1), 4, "styleexpert/inspect")
    routing, scores = Column(g, 6), Column(g, 7)
    preview = routing.add("StyleExpertRoutingPreview", [0, 0, "from checkpoint"])
    g.link(n["expert"], 0, preview, "styleexpert")
    g.link(style, 0, preview, "style")
    text = routing.add("PreviewAny", title="Routing as text")
    g.link(preview, 1, text, "source")
    metrics = scores.add("StyleExpertMetrics", ["(none)"])
    for name, (src, slot) in {"styleexpert": (n["expert"], 0), "clip_vision": (n["siglip"], 0), "output": (dec, 0),
                              "style": (style_img, 0), "content": (n["scale"], 0)}.items():
        g.link(src, slot, metrics, name)
    g.group("Inspect routing and score", [preview, text, metrics], COLOURS["inspect"])
    note(g, "Inspect routing and score the result. Routing Preview draws which experts every layer picks for "
         "the style (rows: layers, first column: the shared expert). Metrics scores the output's style "
         "similarity (StyleExpert encoder space) and content fidelity (SigLIP embedding cosine) and shows a "
         "side-by-side sheet. Models and images as in 'Stylise an image'.", 3)
    return g


def dynamic_batch() -> Graph:
    g = Graph()
    n, _, _ = kontext_base(g)
    images, encoders = Column(g, 2), Column(g, 3)
    s1 = images.add("LoadImage", [STYLE_A, "image"], title="Style 1")
    s2 = images.add("LoadImage", [STYLE_B, "image"], title="Style 2")
    both = encoders.add("ImageBatch")
    g.link(s1, 0, both, "image1")
    g.link(s2, 0, both, "image2")
    enc = encoders.add("StyleExpertEncodeStyle", ["per image"])
    for name, src in (("styleexpert", n["expert"]), ("clip_vision", n["siglip"]), ("images", both)):
        g.link(src, 0, enc, name)
    g.group("One style per sample", [s1, s2, both, enc], COLOURS["style"])
    ref = apply_and_reference(g, n, enc, "dynamic", 4)
    batch = Column(g, 5)
    latent = batch.add("VAEEncode")
    g.link(n["scale"], 0, latent, "pixels")
    g.link(n["vae"], 0, latent, "vae")
    repeat = batch.add("RepeatLatentBatch", [2])
    g.link(latent, 0, repeat, "samples")
    g.group("Batch of two", [latent, repeat], COLOURS["input"])
    sample_and_save(g, n, (ref, 0), (ref, 1), 6, "styleexpert/dynamic", latent=(repeat, 0))
    note(g, "One batch, a different style per sample (dynamic mode). Encode Style with mode 'per image' gives one "
         "latent per style image; Apply in mode 'dynamic' routes sample i of the batch by style i (mod the "
         "number of styles) at every forward, so one sampling run renders both styles.", 3)
    return g


def baked_lora() -> Graph:
    g = Graph()
    loaders, images, steps = Column(g, 0), Column(g, 1), Column(g, 2)
    n = {"siglip": loaders.add("CLIPVisionLoader", [SIGLIP]),
         "expert": loaders.add("StyleExpertLoader", [CHECKPOINT, "(none)"])}
    style, img = encode_style(g, n, images, steps, STYLE_A)
    bake = steps.add("StyleExpertBakeLoRA", list(BAKE_DEFAULTS))
    g.link(n["expert"], 0, bake, "styleexpert")
    g.link(style, 0, bake, "style")
    g.group("Step 1: bake the style into a LoRA (queue once)", [*n.values(), img, style, bake], COLOURS["bake"])
    # Step 2 starts muted: its LoRA file exists only once step 1 has run.
    first = len(g.nodes) + 1
    top = max(Column.TOP, max(node["pos"][1] + node["size"][1] for node in g.nodes) + 140)
    stage = Column(g, 0, top)
    n.update(models(g, stage, kontext=False))
    n["unet"] = stage.add("UNETLoader", [KONTEXT, "default"])
    lora = stage.add("LoraLoaderModelOnly", [BAKED_LORA, 1.0])
    g.link(n["unet"], 0, lora, "model")
    content_and_prompt(g, n, Column(g, 1, top))
    ref = Column(g, 2, top).add("StyleExpertReferenceLatents", ["official", "checkpoint's length"])
    for name, src in (("model", lora), ("conditioning", n["guidance"]), ("vae", n["vae"]), ("content", n["scale"])):
        g.link(src, 0, ref, name)
    col = Column(g, 3, top)
    enc = col.add("VAEEncode")
    g.link(n["scale"], 0, enc, "pixels")
    g.link(n["vae"], 0, enc, "vae")
    ks = col.add("KSampler", [0, "fixed", 28, 1.0, "euler", "simple", 1.0])
    for name, (src, slot) in {"model": (ref, 0), "positive": (ref, 1), "negative": (n["negative"], 0),
                              "latent_image": (enc, 0)}.items():
        g.link(src, slot, ks, name)
    dec = col.add("VAEDecode")
    g.link(ks, 0, dec, "samples")
    g.link(n["vae"], 0, dec, "vae")
    save = Column(g, 4, top).add("SaveImage", ["styleexpert/baked"], width=380)
    g.link(dec, 0, save, "images")
    step2 = list(range(first, len(g.nodes) + 1))
    g.mute(step2)
    g.group("Step 2: stylise with the LoRA (select the group, Ctrl+M to unmute)", step2, COLOURS["sample"])
    note(g, "A style baked into a plain LoRA, for the stock LoRA loader (any Flux LoRA tooling, fp8 and GGUF "
         "models).\n\nStep 1: queue once: Bake LoRA writes models/loras/styleexpert_baked_00001_.safetensors "
         "(the next number on later runs; its readout names the file). Step 2 is muted until then: select its group, press Ctrl+M to unmute it, "
         "pick the new file in the LoRA loader if its name differs, and mute step 1 (Ctrl+M again) so later "
         "runs do not bake again.\n\nOr bake on the command line: styleexpert bake --checkpoint "
         "models/styleexpert/styleexpert.safetensors --style-latent style.safetensors "
         "-o models/loras/styleexpert_baked.safetensors", 3)
    return g


# file name (the template's title in ComfyUI's template browser) -> builder
WORKFLOWS = {"Stylise in one node": one_node, "Stylise an image": basic, "Blend two styles": blend, "Inspect routing and score": inspect,
             "A different style per batch sample": dynamic_batch, "Bake a style into a LoRA": baked_lora}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, build in WORKFLOWS.items():
        (OUT / f"{name}.json").write_text(json.dumps(build().to_json(), indent=1) + "\n")
        print(f"wrote example_workflows/{name}.json")


if __name__ == "__main__":
    main()
