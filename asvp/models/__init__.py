"""Backbones (pre-trained feature extractors) and the heads trained on top of them."""
