"""Models: ``Sequential`` (``sequential``: its structure), its training loop (``training``) and
its file (``saving``)."""

from minidl.model.saving import MODEL_FILE_NAME, load_model, model_file
from minidl.model.sequential import Sequential

__all__ = ["MODEL_FILE_NAME", "Sequential", "load_model", "model_file"]
