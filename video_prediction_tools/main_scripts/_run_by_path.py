"""Imported first by a main script that is run by path (``python video_prediction_tools/main_scripts/<script>.py``,
as the original AMBS's runscripts do), where Python knows no parent package: puts the repository root on
``sys.path`` so that ``video_prediction_tools`` imports (from this checkout). ``python -m`` needs nothing."""
import sys
from pathlib import Path

REPOSITORY_ROOT = str(Path(__file__).resolve().parents[2])
if REPOSITORY_ROOT not in sys.path:
    sys.path.insert(0, REPOSITORY_ROOT)
