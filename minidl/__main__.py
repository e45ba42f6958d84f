"""``python -m minidl ...``: see ``minidl.cli``."""

import sys

from minidl.cli import main

sys.exit(main())
