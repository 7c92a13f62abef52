"""Data curation for StyleExpert / MegaStyle: pure functions over manifests and embeddings.

Modules (one job each): ``kmeans``, ``references`` (style-reference selection), ``dedup`` (SemDeDup), ``balance``
(hierarchical k-means sampling), ``pairing`` (style x content jobs), ``vlm`` / ``vlm_steps`` /
``vlm_transformers`` (captioning and quality filter), ``executor`` (local / Ray Data), ``resume``.
Manifests, embeddings, images and errors come from ``training.data``.
Nothing heavy is imported here, so ``python -m training.curate --help`` stays fast.
"""
