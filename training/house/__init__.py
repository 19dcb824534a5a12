"""The house model: a tiny Stable-Diffusion-architecture family trained on procedural scenes.

Modules: `scene` (generator + ground truth), `captions`, `configs`, `train`, `export`
(LDM → diffusers folders), `rules` (pixel rules for adherence), `evaluate`, `bench`.
"""
