"""``python -m lowbit``: the same as the ``lowbit`` command."""
import sys

from .cli import main

sys.exit(main())
