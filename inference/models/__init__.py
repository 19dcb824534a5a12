"""Stable Diffusion family networks, written so that module paths repeat the original checkpoint keys.

Loading a single-file LDM/SGM checkpoint is then a prefix strip, not a remapping table; the one
unavoidable remapping (diffusers folder names → these names) lives in `inference.convert`.
"""
