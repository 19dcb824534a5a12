"""The AI editing features in the Qt UI: the generation frame on the canvas,
the AI dock (prompt, models, Live, Generate, results) and the adapter that
binds the Qt-free core (:mod:`editor.ai`) to them.

Importing this package does not import the core (torch takes seconds): the
host loads it in the background once the window is up.

- :mod:`.host` — ``AIHost(window)``: dock, overlay, frame-tool target, start-up;
- :mod:`.controller` — ``AIController``: the thin Qt adapter of the Qt-free
  :class:`editor.ai.session.AISession` (live, final, staging rules), plus the
  poll timer, the model catalog the pickers show and the engine built from it;
- :mod:`.relay` — worker-thread core reports -> the UI thread (queued);
- :mod:`.panel`, :mod:`.overlay` — the widgets and the canvas drawing;
- :mod:`.models` — kept name for :mod:`editor.ai.catalog` (model ids -> files, "Add model…" checks);
- :mod:`.stall` — an event-loop stall meter (tests, screenshots).
"""

# OMP_WAIT_POLICY=PASSIVE is set in editor/__init__.py, before anything imports torch.
from .host import AIHost

__all__ = ["AIHost"]
