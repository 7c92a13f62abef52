"""Apply's start/end percent: in dynamic mode the experts act only while the sampling sigma lies in
the window (ControlNet's percent_to_sigma convention), on ComfyUI's real sampling path."""

from __future__ import annotations

import pytest
import torch

from comfy_harness.tiny_flux import flux_forward, flux_sample, random_conditioning, tiny_flux_patcher
import test_nodes_inprocess as inprocess
from test_nodes_inprocess import apply, single

pytestmark = pytest.mark.comfyui
ckpt_file, expert, styles = inprocess.ckpt_file, inprocess.expert, inprocess.styles  # the same fixtures


def record_steps(model):
    """A clone of `model` whose model calls during sampling are recorded as (x, sigma, denoised)."""
    steps = []

    def wrapper(apply_model, args):
        out = apply_model(args["input"], args["timestep"], **args["c"])
        steps.append((args["input"].clone(), float(args["timestep"][0]), out.clone()))
        return out

    recorded = model.clone()
    recorded.set_model_unet_function_wrapper(wrapper)
    return recorded, steps


def test_dynamic_style_acts_only_inside_its_window(pack, expert, styles):
    style = single(styles, 0)
    base = tiny_flux_patcher()
    positive = random_conditioning(4)
    ((context, options),) = positive
    windowed, steps = record_steps(apply(pack, base, expert, style, "dynamic", start_percent=0.3, end_percent=0.7))
    flux_sample(windowed, torch.zeros(1, 16, 8, 8), positive, steps=8, cfg=1.0, seed=3)
    sampling = base.get_model_object("model_sampling")
    high, low = sampling.percent_to_sigma(0.3), sampling.percent_to_sigma(0.7)
    full = apply(pack, base, expert, style, "dynamic")
    inside = 0
    for x, sigma, denoised in steps:
        plain = flux_forward(base, x, sigma, context, options["pooled_output"])
        styled = flux_forward(full, x, sigma, context, options["pooled_output"])
        assert (styled - plain).abs().max() > 1e-3  # the style does change this step's prediction
        expected = styled if low <= sigma <= high else plain
        inside += low <= sigma <= high
        torch.testing.assert_close(denoised, expected, rtol=1e-4, atol=1e-5)
    assert 0 < inside < len(steps) == 8


def test_window_follows_a_later_model_sampling_shift(pack, expert, styles, comfy):
    """The window is turned into sigmas again when sampling starts, with the sampled model's shift."""
    shifted = comfy.nodes.NODE_CLASS_MAPPINGS["ModelSamplingFlux"]().patch(
        apply(pack, tiny_flux_patcher(), expert, single(styles, 0), "dynamic", start_percent=0.5), 0.0, 0.0,
        1024, 1024)[0]  # shift 0: the window's edge moves from sigma 0.76 (shift 1.15) to 0.5
    windowed, steps = record_steps(shifted)
    positive = random_conditioning(4)
    flux_sample(windowed, torch.zeros(1, 16, 8, 8), positive, steps=5, cfg=1.0, seed=3)
    edge = shifted.get_model_object("model_sampling").percent_to_sigma(0.5)
    plain_model = tiny_flux_patcher()
    old_edge = plain_model.get_model_object("model_sampling").percent_to_sigma(0.5)
    assert edge == pytest.approx(0.5) and old_edge == pytest.approx(0.76, abs=0.01)
    ((context, options),) = positive
    styled = [sigma for x, sigma, denoised in steps
              if not torch.allclose(denoised, flux_forward(plain_model, x, sigma, context, options["pooled_output"]),
                                    rtol=1e-4, atol=1e-5)]
    sigmas = [sigma for _, sigma, _ in steps]
    assert styled == [s for s in sigmas if s <= edge] and any(edge < s <= old_edge for s in sigmas)


@pytest.mark.bad_input
@pytest.mark.parametrize("mode, start, end, message", [
    ("merge", 0.2, 1.0, "only in dynamic mode"),
    ("dynamic", 0.8, 0.2, "after end_percent"),
    ("dynamic", -0.1, 1.0, "between 0 and 1"),
    ("dynamic", 0.0, float("nan"), "finite"),
])
def test_bad_windows_are_refused(pack, expert, styles, mode, start, end, message):
    with pytest.raises(Exception, match=message):
        apply(pack, tiny_flux_patcher(), expert, single(styles, 0), mode, start_percent=start, end_percent=end)


def test_window_inputs_are_optional_for_saved_api_prompts(pack):
    schema = pack["StyleExpertApply"].GET_SCHEMA()
    window = {i.id: i for i in schema.inputs if i.id in ("start_percent", "end_percent")}
    assert set(window) == {"start_percent", "end_percent"} and all(i.optional for i in window.values())
