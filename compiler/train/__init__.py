"""Training-side helpers for conversion quality: QCFS ClipFloor activation, ReLU/MaxPool swaps, IIR fine-tuning."""
from snnc.train.clip_floor import ClipFloor, swap_relu
from snnc.train.maxpool import swap_maxpool

__all__ = ["ClipFloor", "swap_relu", "swap_maxpool"]
