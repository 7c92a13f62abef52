"""Data curation for StyleExpert / MegaStyle: pure functions over manifests and embeddings.

Modules (one job each): ``kmeans`` (faiss), ``references`` (style-reference selection), ``hash_dedup``
(exact / pHash), ``dedup`` (SemDeDup), ``balance`` (resampled hierarchical k-means sampling), ``pairing``
(style x content jobs), ``vlm`` / ``vlm_steps`` / ``vlm_backends`` / ``vlm_transformers`` / ``vlm_vllm``
(captioning and quality filter), ``executor`` (local / Ray Data actor pool), ``resume``.
Manifests, embeddings, images and errors come from ``training.data``.
Nothing heavy is imported here, so ``python -m training.curate --help`` stays fast.
"""
