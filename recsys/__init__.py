"""recsys: dual-tower and contrastive recommenders behind one model contract.

The package never imports streamlit: pages in ``app_pages/`` are a thin UI over the
pipelines in :mod:`recsys.pipelines`, and the CLI (``python -m recsys``) reaches
the same pipelines.
"""

__version__ = "0.1.0"
