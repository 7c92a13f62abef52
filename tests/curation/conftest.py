"""Fixtures for the curation / evaluation tests: tiny random models built in code (no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_siglip():
    """A random 20-layer SigLIP (hidden 32, 56 px, patch 14 -> 16 tokens), enough for layer -20."""
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    config = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=20, num_attention_heads=2,
                                image_size=56, patch_size=14)
    return SiglipVisionModel(config).eval()


@pytest.fixture(scope="session")
def tiny_siglip_dir(tiny_siglip, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("siglip")
    tiny_siglip.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip():
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(1)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=56, patch_size=14, projection_dim=16)
    return CLIPVisionModelWithProjection(config).eval()


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory) -> Path:
    """A random LLaVA (1-layer CLIP tower + 1-layer Llama) with a word-level tokenizer, saved like a
    hub folder: loadable by AutoProcessor / AutoModelForImageTextToText without any download."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    words = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "USER:", "ASSISTANT:"] + [f"w{i}" for i in range(57)]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                        bos_token="<s>", eos_token="</s>", extra_special_tokens={"image_token": "<image>"})
    template = ("{% for m in messages %}USER: {% for c in m['content'] %}{% if c['type'] == 'image' %}<image> "
                "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}"
                "{% if add_generation_prompt %} ASSISTANT:{% endif %}")
    image_processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=template)
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=28, patch_size=14),
        text_config=LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2, pad_token_id=0, bos_token_id=2,
                                eos_token_id=3),
        image_token_index=4, vision_feature_layer=-1)
    folder = tmp_path_factory.mktemp("tiny_llava")
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _one_faiss_thread():
    """faiss' OpenMP threads spin-wait; on a small shared CI box that makes the many tiny k-means
    runs of these tests ~10x slower. Real runs keep faiss' default (all cores)."""
    try:
        import faiss
    except ImportError:
        return
    faiss.omp_set_num_threads(1)


def word_tokenizer(words: list[str]):
    """A word-level fast tokenizer built in code (ids: <pad> 0, <unk> 1, <s> 2, </s> 3, then words)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A random full CLIP (text + vision towers, projection 8) with a word tokenizer, saved locally."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    torch.manual_seed(2)
    tokenizer = word_tokenizer([f"w{i}" for i in range(60)])
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, max_position_embeddings=16, pad_token_id=0, bos_token_id=2,
                          eos_token_id=3)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=28, patch_size=14)
    folder = tmp_path_factory.mktemp("tiny_clip_full")
    CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=8)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_dino_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("tiny_dinov2")
    Dinov2Model(Dinov2Config(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                             image_size=28, patch_size=14)).save_pretrained(folder)
    return folder
