"""Test harness for ComfyUI custom node packs against a real ComfyUI checkout (see README.md).

Import its modules by their full name (`from comfy_harness.server import ComfyServer`); this
file imports nothing, so that pytest's own import of it (as a test package) costs nothing.
"""
