"""Conventions shared by the data side and the models, kept here so that neither imports the other.

Example::

    from video_prediction_tools.utils.conventions import DEFAULT_SEQUENCE_LENGTH
    DEFAULT_SEQUENCE_LENGTH     # 24: hours (frames) of a window, context and forecast together
    MAX_SEED                    # 2**32 - 1: the largest random seed training accepts
"""

#: frames of a window (context + forecast) unless the user says otherwise: 24 hours, 12 context + 12 forecast as in
#: the GMD experiment; the models' ``sequence_length`` default and the hours step 2 checks for by default
DEFAULT_SEQUENCE_LENGTH = 24

#: the largest random seed of a training run (numpy's seeds are 32-bit); the generator asks within 0..MAX_SEED
MAX_SEED = 2**32 - 1
