import sys

import pytest

from tests.curation.helpers import read_jsonl, save_image, write_jsonl
from training.data.errors import ConfigError, LabelError, MissingWeightsError, VLMOutputError
from training.curate.executor import LocalExecutor
from training.data.manifest import read_manifest
from training.curate.vlm import (CONTENT_CAPTION_PROMPT, QUALITY_PROMPT, STYLE_CAPTION_PROMPT, QualityThresholds,
                                 clean_caption, judge, parse_scores)
from training.curate.vlm_steps import caption_manifest, filter_manifest
from training.curate.vlm import VLMRequest
from training.curate.vlm_backends import VLMLoader
from training.curate.vlm_transformers import TransformersVLM, TransformersVLMConfig
from training.curate.vlm_vllm import VLLMConfig, VLLMVLM, load_vllm


class FakeVLM:
    """Answers from a table keyed by the last image's file name; records every request."""

    def __init__(self, answers):
        self.answers = answers
        self.requests = []

    def generate(self, requests):
        self.requests.extend(requests)
        return [self.answers[r.images[-1].name] for r in requests]


@pytest.mark.parametrize("text", [
    '{"stylisation": 8, "layout": 6.5, "identity": 9}',
    'Sure! ```json\n{"Stylization": "8", "layout_preservation": 6.5, "Identity consistency": 9}\n```',
    "Here are my scores: {\"stylisation\": 8, \"layout\": 6.5, \"identity\": 9}. Hope this helps.",
    "Stylisation: 8\nLayout: 6.5/10\n- **Identity consistency**: 9",
    "1. stylization = 4/5\n2. layout: 6.5\n3. identity: 9 out of 10",
])
def test_scores_parse_from_json_or_lines(text):
    assert parse_scores(text) == {"stylisation": 8.0, "layout": 6.5, "identity": 9.0}


def test_unparseable_or_out_of_range_output_is_a_clear_error():
    with pytest.raises(VLMOutputError, match=r'could not read score\(s\) \[.identity.\].*lines like "stylisation: 7"'):
        parse_scores("stylisation: 7\nlayout: 7\nthe identity looks fine")
    with pytest.raises(VLMOutputError, match="could not read"):
        parse_scores("I cannot rate these images.")
    with pytest.raises(VLMOutputError, match=r"layout=14 is outside \[0, 10\]"):
        parse_scores('{"stylisation": 1, "layout": 14, "identity": 2}')


def test_thresholds_and_verdicts():
    thresholds = QualityThresholds({"stylisation": 6, "layout": 5})
    assert judge({"stylisation": 6, "layout": 5, "identity": 0}, thresholds).keep
    verdict = judge({"stylisation": 5.9, "layout": 4, "identity": 10}, thresholds)
    assert not verdict.keep and verdict.failed == ("stylisation", "layout")
    with pytest.raises(LabelError, match=r"unknown score name\(s\) \['aesthetics'\]"):
        QualityThresholds({"aesthetics": 5})


def test_caption_prompts_keep_style_and_content_apart():
    assert "Do not mention any object" in STYLE_CAPTION_PROMPT
    assert "Do not mention the artistic style" in CONTENT_CAPTION_PROMPT
    assert clean_caption('Caption: "thick impasto oil, warm palette"') == "thick impasto oil, warm palette"
    with pytest.raises(VLMOutputError, match="empty caption"):
        clean_caption("  Caption:  ")


def _triples(tmp_path, n):
    rows = []
    for i in range(n):
        rows.append({"id": f"t{i}", "content_image": f"c{i}.png", "style_image": f"s{i}.png",
                     "output_image": f"o{i}.png"})
        for kind in "cso":
            save_image(tmp_path / f"{kind}{i}.png", i)
    return read_manifest(write_jsonl(tmp_path / "triples.jsonl", rows))


def test_filter_keeps_passing_triples_and_resumes(tmp_path):
    manifest = _triples(tmp_path, 4)
    vlm = FakeVLM({"o0.png": '{"stylisation": 9, "layout": 8, "identity": 8}',
                   "o1.png": "stylisation: 3\nlayout: 9\nidentity: 9",
                   "o2.png": "no idea",
                   "o3.png": '```json\n{"stylization": 7, "layout": 7, "identity": 7}\n```'})
    report, out = tmp_path / "scores.jsonl", tmp_path / "kept" / "kept.jsonl"
    with pytest.raises(VLMOutputError, match="item 't2'"):
        filter_manifest(manifest, lambda: vlm, QualityThresholds(), report, out, LocalExecutor(), batch_size=1)
    assert [r["id"] for r in read_jsonl(report)] == ["t0", "t1"]  # finished before the bad answer

    asked_before = len(vlm.requests)
    summary = filter_manifest(manifest, lambda: vlm, QualityThresholds(), report, out, LocalExecutor(), batch_size=2,
                              skip_unparseable=True)
    assert len(vlm.requests) - asked_before == 2  # only t2 and t3 were asked again
    assert (summary.already_done, summary.ran, summary.kept) == (2, 2, 2)
    rows = {r["id"]: r for r in read_jsonl(report)}
    assert rows["t1"]["failed"] == ["stylisation"] and "could not read" in rows["t2"]["error"]
    kept = read_jsonl(out)
    assert [r["id"] for r in kept] == ["t0", "t3"]
    assert (out.parent / kept[0]["output_image"]).resolve() == (tmp_path / "o0.png").resolve()
    request = vlm.requests[0]
    assert request.prompt == QUALITY_PROMPT
    assert [p.name for p in request.images] == ["c0.png", "s0.png", "o0.png"]


def test_captioning_with_fake_model(tmp_path):
    rows = [{"id": f"i{k}", "image": f"img/{k}.png"} for k in range(3)]
    manifest = read_manifest(write_jsonl(tmp_path / "m.jsonl", rows))
    vlm = FakeVLM({f"{k}.png": f"Style: flat pastel gouache {k}" for k in range(3)})
    summary = caption_manifest(manifest, lambda: vlm, "style", tmp_path / "captions.jsonl", LocalExecutor(), batch_size=2)
    assert summary.ran == 3
    assert read_jsonl(tmp_path / "captions.jsonl")[2] == {"id": "i2", "style_caption": "flat pastel gouache 2"}
    assert all(r.prompt == STYLE_CAPTION_PROMPT for r in vlm.requests)
    not_loaded = lambda: pytest.fail("every item is done: the model must not be loaded")  # noqa: E731
    again = caption_manifest(manifest, not_loaded, "style", tmp_path / "captions.jsonl", LocalExecutor())
    assert (again.already_done, again.ran, len(vlm.requests)) == (3, 0, 3)
    with pytest.raises(LabelError, match="unknown caption kind"):
        caption_manifest(manifest, lambda: vlm, "mood", tmp_path / "x.jsonl", LocalExecutor())


def test_transformers_adapter_names_the_missing_path(tmp_path):
    with pytest.raises(MissingWeightsError, match=f"weights not found at {tmp_path / 'qwen'}"):
        TransformersVLM(TransformersVLMConfig(tmp_path / "qwen"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingWeightsError, match="has no config.json"):
        TransformersVLM(TransformersVLMConfig(tmp_path / "empty"))


def test_transformers_adapter_generates_a_batch_in_one_call(tiny_vlm_dir, tmp_path):
    """A random tiny LLaVA loaded from disk by the real adapter: one left-padded generate call per
    batch, and every row decodes to what the same request gives alone (so padding is masked)."""
    model = VLMLoader("transformers", tiny_vlm_dir, max_new_tokens=4)()
    calls = []
    real_generate = model._model.generate
    model._model.generate = lambda **kw: calls.append(kw["input_ids"].shape) or real_generate(**kw)
    requests = [VLMRequest(" ".join(f"w{j}" for j in range(3 * i + 1)), (save_image(tmp_path / f"{i}.png", i),))
                for i in range(3)]  # prompts of 1, 4 and 7 words: the batch needs padding
    batched = model.generate(requests)
    assert len(calls) == 1 and calls[0][0] == 3
    assert len(batched) == 3 and all(isinstance(a, str) and a.strip() for a in batched)
    assert batched == [model.generate([r])[0] for r in requests]
    assert model.generate([]) == []


class FakeVLLMEngine:
    """vLLM's LLM.chat stand-in: answers with the text of each conversation's last content part."""

    def __init__(self):
        self.calls = []

    def chat(self, conversations, sampling_params, use_tqdm=True):
        from types import SimpleNamespace

        self.calls.append((conversations, sampling_params))
        return [SimpleNamespace(outputs=[SimpleNamespace(text=c[0]["content"][-1]["text"].upper())])
                for c in conversations]


def test_vllm_adapter_sends_one_chat_call_per_batch(tmp_path):
    engine, sampling = FakeVLLMEngine(), object()
    model = VLLMVLM(engine, sampling, max_images_per_prompt=3)
    images = tuple(save_image(tmp_path / f"{k}.png", k) for k in range(3))
    answers = model.generate([VLMRequest("rate", images), VLMRequest("again", images[:1])])
    assert answers == ["RATE", "AGAIN"]
    (conversations, used_sampling), = engine.calls
    assert used_sampling is sampling
    parts = conversations[0][0]["content"]
    assert [p["type"] for p in parts] == ["image_pil"] * 3 + ["text"]
    assert parts[0]["image_pil"].size == (40, 40)
    with pytest.raises(ConfigError, match="max_images_per_prompt=1; raise it"):
        VLLMVLM(engine, sampling, max_images_per_prompt=1).generate([VLMRequest("rate", images)])


def test_vllm_backend_is_optional_and_says_how_to_install(tmp_path, monkeypatch):
    folder = tmp_path / "qwen"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ImportError, match="pip install vllm"):
        VLMLoader("vllm", folder)()
    with pytest.raises(MissingWeightsError, match="weights not found"):
        load_vllm(VLLMConfig(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="unknown VLM backend 'sglang'"):
        VLMLoader("sglang", folder)
