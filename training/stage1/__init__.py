"""Stage 1: the style encoder (the core StyleProjector) on SigLIP features.

``python -m training.stage1 [config.yaml] --key=value ...`` trains (``train.py``);
``python -m training.stage1.cache ...`` runs the caching pass first (``cache.py``).
"""
