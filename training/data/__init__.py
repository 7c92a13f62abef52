"""The data vocabulary shared by training, curation and evaluation.

``errors`` (every user-input error), ``files`` (atomic writes, the JSONL reader/writer),
``manifest`` (id'ed curation manifests), ``triplets`` (the training triplet manifest),
``images`` (the one image opener), ``embeddings`` (.safetensors/.npy aligned to a manifest),
``local_weights``, ``buckets``, ``samplers``, ``backbones`` (the frozen encoders the caching
pass runs) and ``cache`` (the sharded feature-cache library).
"""
