"""recsys: dual-tower and contrastive recommenders behind one model contract.

The package never imports streamlit: pages in ``app_pages/`` are a thin UI over the
domain packages (:mod:`recsys.videos`, :mod:`recsys.anime`, :mod:`recsys.sequential`), and the CLI
(``python -m recsys``) reaches the same modules. :mod:`recsys.registry` is the one list of models.
"""

__version__ = "0.1.0"
