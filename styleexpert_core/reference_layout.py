"""The official StyleExpert layout of Kontext reference tokens, shared by the nodes and training.

The content image is reference index 1; the style image, when it is fed as tokens, is index 2
with its rows (position ids, token units) shifted by STYLE_ROW_OFFSET so it never overlaps the
content grid.
"""

STYLE_ROW_OFFSET = 64  # the official pipeline's "style_offset"
