"""``python -m training.stage2 [config.yaml] --key=value ...``: train the experts (see ``train.py``)."""

import sys

from ..config import load_config, setup_logging
from .train import Stage2Config, main

setup_logging()
main(load_config(Stage2Config, sys.argv[1:]))
