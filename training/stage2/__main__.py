"""``python -m training.stage2 [config.yaml] --key=value ...``: train the experts (see ``train.py``)."""

from ..config import config_main
from .train import Stage2Config, main

config_main(Stage2Config, main)
