"""Tiny random-weight FLUX.1 pipelines in the real diffusers layout, built offline.

Like `tiny_models`, they are oracle fixtures: diffusers' FluxPipeline runs them as the reference,
our engine loads the same folders. The T5 vocabulary is a small Unigram model trained here with
the `tokenizers` library and saved as `tokenizer.json` (diffusers' own tests download
`hf-internal-testing/tiny-random-t5`; we stay offline).
"""
from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import torch

from inference.tokenizer import CLIPTokenizer

# A SentencePiece `precompiled_charsmap` that maps nothing: trie size, 256 empty double-array
# units (no byte matches a label), no replacement strings.
IDENTITY_CHARSMAP = struct.pack("<I", 4 * 256) + bytes(4 * 256) + b"\0"

CLIP_WIDTH = 32
T5_WIDTH = 32
T5_VOCAB = 400

SCHNELL_SCHEDULER = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
                     "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}
DEV_SCHEDULER = {**SCHNELL_SCHEDULER, "shift": 3.0, "use_dynamic_shifting": True}

_WORDS = ["a", "the", "of", "and", "in", "on", "with", "at", "under", "over", "lighthouse", "cliff", "sunset", "oil", "painting", "cat", "dog", "red", "blue", "green", "mountain", "lake", "river", "forest", "city", "street", "night", "morning", "portrait", "photo", "of", "an", "old", "man", "woman", "child", "castle", "dragon", "sky", "cloud", "storm", "sea", "boat", "harbour", "garden", "flower", "tree", "snow", "winter", "summer", "autumn", "spring", "golden", "hour", "cinematic", "lighting", "detailed", "4k", "watercolor", "sketch", "neon", "glowing", "robot", "astronaut"]


def prompts(count: int, seed: int = 0) -> list[str]:
    """Prompts with the awkward bits tokenizers trip on: case, digits, punctuation, runs of
    spaces, tabs, newlines, accents, CJK, emoji, special-token text, very long inputs."""
    rng = random.Random(seed)
    extras = ["", "  ", "\t", "\n", ",", ".", "!", "(", ")", ":1.2", "é", "naïve", "Ünïcödé", "東京", "🙂", "</s>",
              "<pad>", "<unk>", "ﬁ", "１２３", "--", "'s", "don't", "x2", "3.5"]
    out = ["", " ", "a", "A", "  leading and trailing  ", "multiple   spaces", "tab\tand\nnewline"]
    while len(out) < count:
        n = rng.choice([1, 3, 8, 20, 120, 400])
        parts = []
        for _ in range(n):
            word = rng.choice(_WORDS)
            if rng.random() < 0.2:
                word = word.upper() if rng.random() < 0.5 else word.capitalize()
            parts.append(word + (rng.choice(extras) if rng.random() < 0.3 else ""))
        out.append(" ".join(parts))
    return out


def build_t5_tokenizer(folder: Path) -> Path:
    """A T5-style Unigram tokenizer folder (tokenizer.json + tokenizer_config.json)."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.Unigram())
    # As T5's tokenizer.json: SentencePiece's precompiled normaliser (here an identity one: a
    # double-array trie that matches nothing), then runs of spaces collapsed, "▁" word boundaries.
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(IDENTITY_CHARSMAP),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.UnigramTrainer(vocab_size=T5_VOCAB, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(prompts(300, seed=99), trainer)
    tok.post_processor = processors.TemplateProcessing(single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"],
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
              "extra_ids": 0, "additional_special_tokens": [], "model_max_length": 512}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def _randomise(module: torch.nn.Module, seed: int, scale: float = 0.1) -> None:
    """Default inits leave norms at 1 and biases at 0, which hides naming mistakes; perturb all."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))


def build_flux(root: Path, *, dev: bool, seed: int = 0) -> Path:
    """A tiny FLUX.1 folder: dev-like (guidance embedding, dynamic shift) or schnell-like."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        T5Config,
        T5EncoderModel,
        T5TokenizerFast,
    )
    from transformers import CLIPTokenizer as HFCLIPTokenizer

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=2, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=T5_WIDTH, pooled_projection_dim=CLIP_WIDTH,
        guidance_embeds=dev, axes_dims_rope=(4, 6, 6))
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=CLIP_WIDTH, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407,
        pad_token_id=1))
    t5 = T5EncoderModel(T5Config(
        vocab_size=T5_VOCAB, d_model=T5_WIDTH, d_kv=8, d_ff=40, num_layers=2, num_heads=4,
        feed_forward_proj="gated-gelu", dropout_rate=0.0, decoder_start_token_id=0))
    vae = AutoencoderKL(block_out_channels=(16, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=8,
                        latent_channels=16, sample_size=64, use_quant_conv=False, use_post_quant_conv=False,
                        scaling_factor=0.3611, shift_factor=0.1159)
    for i, module in enumerate((transformer, clip, t5, vae)):
        _randomise(module, seed * 10 + i)
    tok_dir = CLIPTokenizer.default(pad_token_id=49407).write_folder(root / "tok" / "clip")
    t5_dir = build_t5_tokenizer(root / "tok" / f"t5-{seed}")
    scheduler = FlowMatchEulerDiscreteScheduler(**(DEV_SCHEDULER if dev else SCHNELL_SCHEDULER))
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=HFCLIPTokenizer.from_pretrained(tok_dir),
                        text_encoder_2=t5, tokenizer_2=T5TokenizerFast.from_pretrained(t5_dir), transformer=transformer)
    folder = root / f"flux-{'dev' if dev else 'schnell'}-{seed}"
    pipe.save_pretrained(folder)
    return folder
