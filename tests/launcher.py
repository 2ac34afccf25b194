"""The command line that starts a Python like the one running the tests.

`sys.executable` unless LOWBIT_TEST_PYTHON names another launcher: the aarch64 CI job
runs the suite under qemu-user, where an aarch64 binary cannot be exec'd directly.
"""
import os
import shlex
import sys

PYTHON = shlex.split(os.environ.get("LOWBIT_TEST_PYTHON", "")) or [sys.executable]
