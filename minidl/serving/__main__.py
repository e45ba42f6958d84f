"""``python -m minidl.serving --model_name m --model_base_path /models/m``."""

import sys

from minidl.serving.cli import main

sys.exit(main(sys.argv[1:]))
