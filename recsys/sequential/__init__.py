"""sequential domain: data prep, training, serving, experiments, CLI and page helpers, one module each.

The constants below are here (not in :mod:`recsys.sequential.prep`) so that the CLI can
build its parser without importing torch.
"""

#: the datasets the CL-EPIDTN reproduction runs on
DATASETS = ("ml-100k", "anime")
#: leave-one-out and the last-20% ratio split
SPLITS = ("loo", "ratio")
#: environment variable naming the reproduction's output folder (default docs/results/cl-epidtn)
RESULTS_ENV = "RECSYS_RESULTS_DIR"
