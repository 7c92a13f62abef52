"""Convert UI-format workflows (as saved by the ComfyUI editor) to API prompts, and swap nodes
that need real weights for the test-only stand-ins.

ui_to_api follows what frontend 1.27.10 does in graphToPrompt, using the server's /object_info:
* widget values (`widgets_values`) belong to the node's widget inputs in definition order
  (required, then optional, as in `input_order`); some widgets carry extra values that are not
  inputs: the control_after_generate combo after INT seeds (`seed`/`noise_seed` get one unless
  the input says control_after_generate=False, other INTs when it says True), the upload
  button after image/video/audio upload combos;
* a linked input takes the link's source instead, following Reroute nodes, bypassed nodes
  (mode 4: to the first input of the same type) and PrimitiveNode constants;
* Note/MarkdownNote and muted nodes (mode 2) are left out; links from them are dropped.
Subgraphs are not supported. test_harness checks the result against the browser's graphToPrompt.
"""

from __future__ import annotations

import copy
import logging
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

NOTE_NODE_TYPES = frozenset({"Note", "MarkdownNote"})
FRONTEND_ONLY_NODE_TYPES = NOTE_NODE_TYPES | {"PrimitiveNode", "Reroute"}
MODE_MUTED, MODE_BYPASSED = 2, 4
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
SEED_INPUT_NAMES = frozenset({"seed", "noise_seed"})
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload", "audio_upload")

TEXT_ENCODE_NODES = {"CLIPTextEncode": "text", "CLIPTextEncodeFlux": "t5xxl"}
TEXT_ENCODER_LOADERS = frozenset({"CLIPLoader", "DualCLIPLoader", "TripleCLIPLoader", "QuadrupleCLIPLoader"})
TEST_CONDITIONING_NODE = "StyleExpertTestConditioning"
TEST_TINY_FLUX_NODE = "StyleExpertTestTinyFlux"
# StyleExpertTestTinyFlux inputs for the harness's default tiny Flux (hidden 64, context 32).
TINY_FLUX_INPUTS = {"hidden_size": 64, "num_heads": 2, "depth": 2, "depth_single_blocks": 2, "axes_dim": "8,12,12",
                    "context_in_dim": 32, "vec_in_dim": 32, "seed": 0}


class WorkflowConversionError(ValueError):
    pass


@dataclass(frozen=True)
class _Link:
    origin_id: int
    origin_slot: int
    target_id: int
    target_slot: int
    type: str


def ui_to_api(
    workflow: Mapping,
    object_info: Mapping,
    *,
    strict: bool = False,
    extra_widget_types: Iterable[str] = (),
) -> dict:
    """API prompt {node_id: {"class_type", "inputs", "_meta"}} for a UI-format workflow.

    strict: a node with more widgets_values than its widget inputs take raises
    WorkflowConversionError; by default they are mapped in order and a warning is logged
    (frontend extensions append non-input widgets such as LoadImage's preview).
    extra_widget_types: custom input types a frontend extension draws as widgets (getCustomWidgets).
    """
    if (workflow.get("definitions") or {}).get("subgraphs"):
        raise WorkflowConversionError("workflows with subgraphs are not supported by ui_to_api")
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = _links_by_id(workflow.get("links", []))
    missing = sorted(
        {
            n["type"]
            for n in nodes.values()
            if n["type"] not in object_info and n["type"] not in FRONTEND_ONLY_NODE_TYPES
        }
    )
    if missing:
        raise WorkflowConversionError(f"node types unknown to this server: {missing}")
    widget_types = WIDGET_TYPES | set(extra_widget_types)

    prompt = {}
    for node_id in sorted(nodes):
        node = nodes[node_id]
        if node["type"] in FRONTEND_ONLY_NODE_TYPES or node.get("mode", 0) in (MODE_MUTED, MODE_BYPASSED):
            continue
        info = object_info[node["type"]]
        inputs = _widget_inputs(node, info, widget_types, strict)
        for slot in node.get("inputs") or []:
            if slot.get("link") is None:
                continue
            source = _resolve_link(links[slot["link"]], nodes, links)
            if source is not None:
                inputs[slot["name"]] = source
        prompt[str(node_id)] = {
            "class_type": node["type"],
            "inputs": inputs,
            "_meta": {"title": node.get("title") or info.get("display_name") or node["type"]},
        }
    return prompt


def widget_inputs(info: Mapping, widget_types: Iterable[str] = WIDGET_TYPES) -> list[tuple[str, int, object]]:
    """[(input name, number of widgets_values it occupies, default)] in the frontend's widget order."""
    widget_types = set(widget_types)
    result = []
    declared = info.get("input", {})
    order = info.get("input_order") or {
        section: list(declared.get(section, {})) for section in ("required", "optional")
    }
    for section in ("required", "optional"):
        for name in order.get(section, []):
            spec = declared.get(section, {}).get(name)
            if spec is None:
                continue
            kind = spec[0]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
            is_combo = isinstance(kind, list) or kind == "COMBO"
            if options.get("forceInput") or not (is_combo or kind in widget_types):
                continue
            width = 1 + _extra_widget_values(name, kind, options, is_combo)
            result.append((name, width, _widget_default(kind, options, is_combo)))
    return result


def _extra_widget_values(name: str, kind, options: Mapping, is_combo: bool) -> int:
    control = options.get("control_after_generate")
    extra = 0
    if kind == "INT" and (control if control is not None else name in SEED_INPUT_NAMES):
        extra += 1  # the "control after generate" combo
    elif is_combo and control:
        extra += 2  # control combo + its filter-list text widget
    if is_combo and any(options.get(flag) for flag in UPLOAD_OPTIONS):
        extra += 1  # the upload button widget is saved too
    return extra


def _widget_default(kind, options: Mapping, is_combo: bool):
    """The value a new widget starts with (used when a saved node predates the input)."""
    if "default" in options:
        return options["default"]
    if is_combo:
        choices = kind if isinstance(kind, list) else options.get("options") or []
        return choices[0] if choices else None
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind)


def _widget_inputs(node: Mapping, info: Mapping, widget_types, strict: bool) -> dict:
    names = widget_inputs(info, widget_types)
    values = node.get("widgets_values") or []
    if isinstance(values, Mapping):  # some packs save widgets by name
        return {name: values.get(name, default) for name, _, default in names}
    expected = sum(width for _, width, _ in names)
    if len(values) > expected:
        # Frontend extensions may append widgets that are not inputs (preview, refresh, ...);
        # they come after the input widgets, so mapping in order stays right in practice.
        message = (
            f"node {node['id']} ({node['type']}): {len(values)} widgets_values {values!r} but its widget "
            f"inputs {[(n, w) for n, w, _ in names]} take {expected}"
        )
        if strict:
            raise WorkflowConversionError(message)
        log.warning("%s; mapping them in order", message)
    inputs, position = {}, 0
    for name, width, default in names:
        # Values missing at the end (a node saved before an input was added) take the default, as in the editor.
        inputs[name] = values[position] if position < len(values) else default
        position += width
    return inputs


def _links_by_id(raw_links) -> dict[int, _Link]:
    links = {}
    for link in raw_links:
        if isinstance(link, Mapping):  # workflow schema 1.0
            links[link["id"]] = _Link(
                link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"], link.get("type")
            )
        else:  # schema 0.4: [id, origin_id, origin_slot, target_id, target_slot, type]
            links[link[0]] = _Link(link[1], link[2], link[3], link[4], link[5] if len(link) > 5 else None)
    return links


def _resolve_link(link: _Link, nodes: Mapping, links: Mapping, depth: int = 0):
    """[origin_id, slot] of the real producing node, a PrimitiveNode's value, or None (muted / dangling)."""
    if depth > 100:
        raise WorkflowConversionError(f"link cycle through node {link.origin_id}")
    origin = nodes.get(link.origin_id)
    if origin is None or origin.get("mode", 0) == MODE_MUTED:
        return None
    if origin["type"] == "PrimitiveNode":
        return (origin.get("widgets_values") or [None])[0]
    if origin["type"] == "Reroute" or origin.get("mode", 0) == MODE_BYPASSED:
        upstream = _bypass_input(origin, link)
        if upstream is None or upstream.get("link") is None:
            return None
        return _resolve_link(links[upstream["link"]], nodes, links, depth + 1)
    return [str(link.origin_id), link.origin_slot]


def _bypass_input(node: Mapping, link: _Link):
    """The input a bypassed node passes through to output `link.origin_slot`: same index if the
    type matches, else the first input of that type (a Reroute has a single input)."""
    inputs = node.get("inputs") or []
    if node["type"] == "Reroute":
        return inputs[0] if inputs else None
    wanted = link.type
    if link.origin_slot < len(inputs) and inputs[link.origin_slot].get("type") == wanted:
        return inputs[link.origin_slot]
    return next((slot for slot in inputs if slot.get("type") == wanted), None)


# -- editing API prompts ---------------------------------------------------------------------


def api_node(object_info: Mapping, class_type: str, **inputs) -> dict:
    """{"class_type", "inputs"} with every widget input not given set to its default, so a test
    names only what it cares about (the server rejects prompts that omit required inputs)."""
    defaults = {name: default for name, _, default in widget_inputs(object_info[class_type])}
    return {"class_type": class_type, "inputs": {**defaults, **inputs}}


def nodes_of_type(prompt: Mapping, class_type: str) -> list[str]:
    return sorted((node_id for node_id, node in prompt.items() if node["class_type"] == class_type), key=_id_order)


def set_inputs(prompt: Mapping, target: str, **values) -> dict:
    """Copy of `prompt` with inputs set on node id `target`, or on every node of class `target`."""
    result = copy.deepcopy(dict(prompt))
    ids = [target] if target in result else nodes_of_type(result, target)
    if not ids:
        raise KeyError(f"no node with id or class_type {target!r}")
    for node_id in ids:
        result[node_id]["inputs"].update(values)
    return result


def replace_nodes(
    prompt: Mapping, class_type: str, new_class_type: str, inputs: Mapping | Callable[[str, dict], dict]
) -> dict:
    """Copy of `prompt` where each `class_type` node becomes `new_class_type` under the same id,
    so links to it stay valid; `inputs` is a dict or f(node_id, old_node) -> dict."""
    result = copy.deepcopy(dict(prompt))
    for node_id in nodes_of_type(result, class_type):
        old = result[node_id]
        new_inputs = inputs(node_id, old) if callable(inputs) else dict(inputs)
        result[node_id] = {
            "class_type": new_class_type,
            "inputs": new_inputs,
            "_meta": {"title": f"{new_class_type} (test stand-in for {class_type} {node_id})"},
        }
    return result


def substitute_text_encoders(
    prompt: Mapping,
    *,
    context_dim: int = 32,
    pooled_dim: int = 32,
    tokens: int = 4,
    seed: int = 0,
) -> dict:
    """Replace CLIPTextEncode / CLIPTextEncodeFlux with StyleExpertTestConditioning and drop the
    text-encoder loaders nobody uses any more. The same text gives the same conditioning."""

    def stand_in(node_id: str, node: dict) -> dict:
        text = str(node["inputs"].get(TEXT_ENCODE_NODES[node["class_type"]], ""))
        guidance = node["inputs"].get("guidance", 3.5)
        return {
            "seed": (seed + zlib.crc32(text.encode())) % 2**31,
            "tokens": tokens,
            "context_dim": context_dim,
            "pooled_dim": pooled_dim,
            "guidance": guidance if isinstance(guidance, (int, float)) else 3.5,
        }

    result = dict(prompt)
    for class_type in TEXT_ENCODE_NODES:
        result = replace_nodes(result, class_type, TEST_CONDITIONING_NODE, stand_in)
    return drop_unreferenced(result, TEXT_ENCODER_LOADERS)


def substitute_diffusion_model(prompt: Mapping, *, seed: int = 0, **tiny_flux_inputs) -> dict:
    """Replace UNETLoader with StyleExpertTestTinyFlux (defaults: hidden 64, context 32)."""
    inputs = {**TINY_FLUX_INPUTS, "seed": seed, **tiny_flux_inputs}
    return replace_nodes(prompt, "UNETLoader", TEST_TINY_FLUX_NODE, inputs)


def drop_unreferenced(prompt: Mapping, class_types: Iterable[str]) -> dict:
    """Remove nodes of the given classes that no other node links to."""
    class_types = set(class_types)
    referenced = {
        value[0]
        for node in prompt.values()
        for value in node["inputs"].values()
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
    }
    return {
        node_id: node
        for node_id, node in prompt.items()
        if node["class_type"] not in class_types or node_id in referenced
    }


def strip_meta(prompt: Mapping) -> dict:
    """The prompt without `_meta` (titles), e.g. to compare two conversions."""
    return {node_id: {"class_type": n["class_type"], "inputs": n["inputs"]} for node_id, n in prompt.items()}


def _id_order(node_id: str):
    return (0, int(node_id)) if node_id.isdigit() else (1, node_id)
