"""Stage 2: routed MoE-LoRA experts on a frozen FLUX.1-Kontext-dev.

``python -m training.stage2 [config.yaml] --key=value ...`` trains (``train.py``; also under
``accelerate launch -m training.stage2`` and ``torchrun -m training.stage2``);
``python -m training.stage2.cache ...`` runs the caching pass first (``cache.py``);
``python -m training.stage2.export ...`` puts a stage-1 projector into an experts file (``export.py``).
"""
