"""Shared pytest set-up: quiet TensorFlow, CPU only, session-wide fixtures from ``test/fixtures/``.

Fixtures are grouped by workflow step in ``fixtures/<area>.py`` and imported here so every test file sees them.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MPLBACKEND", "Agg")

from fixtures.common import *  # noqa: E402,F401,F403
from fixtures.archive import *  # noqa: E402,F401,F403
from fixtures.preprocessed import *  # noqa: E402,F401,F403
from fixtures.trained import *  # noqa: E402,F401,F403
from fixtures.generator import *  # noqa: E402,F401,F403
