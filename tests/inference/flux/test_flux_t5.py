"""T5 v1.1 encoder and tokenizer (FLUX.1's second text encoder) against transformers."""
from __future__ import annotations

import pytest
import torch
from flux_models import build_t5_tokenizer, prompts

from inference.flux.config import T5_XXL, T5Config
from inference.flux.t5 import T5Encoder, relative_position_bucket, t5_state
from inference.flux.t5_tokenizer import T5Tokenizer


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    return build_t5_tokenizer(tmp_path_factory.mktemp("t5tok"))


@pytest.mark.parametrize("max_length", [256, 512, 8])
def test_t5_token_ids_equal_transformers_over_many_prompts(t5_folder, max_length):
    from transformers import T5TokenizerFast

    reference = T5TokenizerFast.from_pretrained(t5_folder)
    ours = T5Tokenizer.from_folder(t5_folder)
    texts = prompts(240, seed=5)
    truncated = 0
    for text in texts:
        expected = reference(text, padding="max_length", max_length=max_length, truncation=True,
                             return_tensors="pt").input_ids
        got = ours(text, max_length)
        assert torch.equal(got, expected), repr(text)
        truncated += int(len(ours.encode(text)) >= max_length)
    assert truncated > 0  # the long prompts exercised truncation
    assert ours.eos_token_id == 1 and ours.pad_token_id == 0


def test_t5_text_pipeline_is_rebuilt_as_transformers_does(t5_folder):
    """Precompiled normaliser kept, the file's " {2,}" replacement dropped, whitespace split first:
    a prompt of spaces has no piece (the file as is would give "▁")."""
    from tokenizers import Tokenizer

    ours = T5Tokenizer.from_folder(t5_folder)
    assert type(ours._backend.normalizer).__name__ == "Precompiled"
    assert ours.encode("   ") == [] and ours("   ", 4).tolist() == [[1, 0, 0, 0]]
    as_file = Tokenizer.from_file(str(t5_folder / "tokenizer.json"))
    assert as_file.encode("   ", add_special_tokens=False).ids != []
    assert ours.encode("a cat") == ours.encode("  a \t\n cat ")


def test_t5_tokenizer_needs_tokenizer_json(tmp_path):
    from inference.errors import ModelFormatError

    (tmp_path / "spiece.model").write_bytes(b"\x00")
    with pytest.raises(ModelFormatError, match="tokenizer.json"):
        T5Tokenizer.from_folder(tmp_path)


def test_relative_position_buckets_equal_transformers():
    from transformers.models.t5.modeling_t5 import T5Attention as HFT5Attention

    positions = torch.arange(600)
    relative = positions[None, :] - positions[:, None]
    expected = HFT5Attention._relative_position_bucket(relative, bidirectional=True, num_buckets=32, max_distance=128)
    assert torch.equal(relative_position_bucket(relative, 32, 128), expected)


def _tiny_reference(gated: bool):
    from transformers import T5Config as HFConfig
    from transformers import T5EncoderModel

    torch.manual_seed(0)
    config = HFConfig(vocab_size=300, d_model=32, d_kv=8, d_ff=40, num_layers=3, num_heads=4, dropout_rate=0.0,
                      feed_forward_proj="gated-gelu" if gated else "relu")
    model = T5EncoderModel(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model, config


@pytest.mark.parametrize("gated", [True, False])
def test_t5_encoder_equals_transformers(gated):
    reference, hf_config = _tiny_reference(gated)
    config = T5Config.from_transformers(hf_config.to_dict())
    assert config.gated is gated
    with torch.device("meta"):
        ours = T5Encoder(config)
    ours.load_state_dict(t5_state(dict(reference.state_dict())), strict=True, assign=True)
    ids = torch.randint(0, 300, (2, 300), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(ids).last_hidden_state
        got = ours(ids)
        mask = (torch.arange(300) < 200).long()[None].repeat(2, 1)
        expected_masked = reference(ids, attention_mask=mask).last_hidden_state
        got_masked = ours(ids, attention_mask=mask)
    assert expected.abs().mean() > 0.3
    assert (got - expected).abs().max() < 1e-5
    assert (got_masked - expected_masked).abs().max() < 1e-5


def test_t5_xxl_layout_matches_transformers():
    """FLUX's text_encoder_2 (t5-v1_1-xxl) on meta: same keys, shapes and 4,762,310,656 parameters."""
    from transformers import T5Config as HFConfig
    from transformers import T5EncoderModel

    hf_config = HFConfig(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                         feed_forward_proj="gated-gelu")
    with torch.device("meta"):
        reference = T5EncoderModel(hf_config)
        ours = T5Encoder(T5Config.from_transformers(hf_config.to_dict()))
    assert T5Config.from_transformers(hf_config.to_dict()) == T5_XXL
    expected = {k: tuple(v.shape) for k, v in t5_state(dict(reference.state_dict())).items()}
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert got == expected
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in reference.parameters()) == 4_762_310_656
