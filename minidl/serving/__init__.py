"""minidl.serving: a TensorFlow-Serving-compatible REST server for minidl models.

``create_app(...)`` returns an ASGI application; ``serve`` runs it under uvicorn
(``minidl serve`` / ``main``); ``ModelManager`` loads and hot-swaps model versions.
See docs/serving.md.
"""

from minidl.serving.app import ServingApp, create_app
from minidl.serving.cli import build_arg_parser, main
from minidl.serving.config import ModelConfig, VersionPolicy, parse_model_config
from minidl.serving.models import ModelManager

__all__ = [
    "ModelConfig",
    "ModelManager",
    "ServingApp",
    "VersionPolicy",
    "build_arg_parser",
    "create_app",
    "main",
    "parse_model_config",
]
