"""Evaluation for StyleExpert: StyleRetrieval (mAP / Recall@k) and the stylisation suite.

Modules: ``encoders`` (image encoders behind one interface), ``loaders`` (build them from local
files), ``paper_metrics`` (DINO, CLIP image/text, DreamSim), ``vlm_scores`` (the curate filter's
VLM scores), ``embed`` (batched encoding), ``retrieval``, ``suite``, ``plots`` (PIL charts),
``html_report``. Metric formulas live in ``styleexpert_core.metrics``.
"""
