"""The names of the files in a results directory, apart from their writers (:mod:`.results_io`) so that the
runscript generator finds postprocessed runs without importing what writes them.

Example::

    from video_prediction_tools.postprocess.file_names import EVALUATION_FILE
    sorted(Path("Results").glob(f"*/*/*/{EVALUATION_FILE}"))      # every postprocessed run
"""

#: the scores of every pipeline (raw, bootstrapped, averaged)
EVALUATION_FILE = "evaluation_metrics.nc"
#: ``summary_metrics.csv`` and ``.md``: the table of averaged scores and skill per lead hour
SUMMARY_STEM = "summary_metrics"
LOG_FILE = "postprocess.log"
#: what the results directory was made from (checkpoint, weights digest, data fingerprint, options)
PROVENANCE_FILE = "results_provenance.json"
#: the per-forecast sample files of ERA5 postprocessing
SAMPLE_PATTERN = "vfp_date_*_sample_ind_*.nc"
