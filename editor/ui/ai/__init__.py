"""The AI editing features in the Qt UI: the generation frame on the canvas,
the AI dock (prompt, models, Live, Generate, results) and the adapter that
binds the Qt-free core (:mod:`editor.ai`) to them.

Importing this package does not import the core (torch takes seconds): the
host loads it in the background once the window is up.

- :mod:`.host` — ``AIHost(window)``: dock, overlay, frame-tool target, start-up;
- :mod:`.controller` — ``AIController``: frame, request, engine/service, live
  preview, final render, staging (UI thread; imports the core);
- :mod:`.relay` — worker-thread core signals -> queued Qt signals;
- :mod:`.panel`, :mod:`.overlay` — the widgets and the canvas drawing;
- :mod:`.models` — model ids ("house:preview", "house:full", user paths) -> files;
- :mod:`.stall` — an event-loop stall meter (tests, screenshots).
"""

# OMP_WAIT_POLICY=PASSIVE is set in editor/__init__.py, before anything imports torch.
from .host import AIHost

__all__ = ["AIHost"]
