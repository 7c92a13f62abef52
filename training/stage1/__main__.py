"""``python -m training.stage1 [config.yaml] --key=value ...``: train the style encoder (see ``train.py``)."""

import sys

from ..config import load_config, setup_logging
from .train import Stage1Config, main

setup_logging()
main(load_config(Stage1Config, sys.argv[1:]))
