"""FLUX.1 (rectified-flow DiT) in our own PyTorch code, proven pixel-equal to diffusers' FluxPipeline.

The pieces are kept general so later families reuse them: `rope` (n-axis rotary embeddings),
`sampling` (flow-matching Euler schedules, packed latents, position ids), `t5` / `t5_tokenizer`
(T5 v1.1 encoder), `transformer` (double/single-stream DiT blocks). Module attribute paths repeat
the original BFL checkpoint keys (`double_blocks.0.img_attn.qkv`); diffusers folders are renamed
into them by `convert`. `config` is torch-free.
"""
