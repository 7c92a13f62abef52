"""``python -m training.stage1 [config.yaml] --key=value ...``: train the style encoder (see ``train.py``)."""

from ..config import config_main
from .train import Stage1Config, main

config_main(Stage1Config, main)
