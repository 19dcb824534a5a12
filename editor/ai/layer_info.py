"""What a generated layer says about itself: the settings stored in its
attributes (``canvasai:prompt`` … in an .ora), as text a tooltip or a
properties line can show. Qt-free."""

from __future__ import annotations

import json

# The generator attribute of layers this editor generated (request.py writes it; kept here so the
# layers panel can read layer metadata without importing the AI core).
GENERATOR = "canvasai"

MODE_WORDS = {"txt2img": "Generate", "img2img": "Prompt edit", "inpaint": "Inpaint selection",
              "outpaint": "Expand", "kontext": "Edit with Kontext"}


def is_generated(attributes: dict[str, str]) -> bool:
    return attributes.get("generator") == GENERATOR and "frame" in attributes


def generation_lines(attributes: dict[str, str]) -> list[str]:
    """["Prompt: a red fox", "Seed 1234 · 20 steps · guidance 7 · Euler", ...]; [] for other layers."""
    if not is_generated(attributes):
        return []
    a = attributes
    lines = [f"Prompt: {a.get('prompt') or '(none)'}"]
    if a.get("negative"):
        lines.append(f"Negative: {a['negative']}")
    lines.append(f"Seed {a.get('seed', '?')} · {a.get('steps', '?')} steps · guidance {a.get('guidance', '?')}"
                 f" · {a.get('sampler', '?')}")
    mode = MODE_WORDS.get(a.get("mode", ""), a.get("mode", "?"))
    strength = a.get("strength")
    strength_text = f" · strength {float(strength) * 100:.0f} %" if strength and mode != "Generate" else ""
    lines.append(f"{mode}{strength_text} · model {a.get('model', '?')}")
    x, y, w, h = (a.get("frame", "?,?,?,?").split(",") + ["?"] * 4)[:4]
    lines.append(f"Frame {w}×{h} at {x}, {y}")
    loras = lora_text(a.get("loras", ""))
    if loras:
        lines.append(f"LoRAs: {loras}")
    return lines


def lora_text(stored: str) -> str:
    """"detail 0.8, ink style 1" from the ``loras`` attribute (editor.ai.loras.encode_loras; read
    here with json alone so the layers panel needs no AI import); "" for none or a damaged one."""
    try:
        rows = json.loads(stored) if stored else []
    except ValueError:
        return ""
    parts = [f"{row.get('name') or row.get('path')} {float(row.get('weight', 1)):g}"
             for row in rows if isinstance(row, dict) and isinstance(row.get("weight", 1), (int, float))]
    return ", ".join(parts) if isinstance(rows, list) else ""


def generation_summary(attributes: dict[str, str]) -> str:
    return "\n".join(generation_lines(attributes))
