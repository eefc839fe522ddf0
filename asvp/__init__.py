"""asvp: active learning via proxies with pre-trained models (Wen, Pizarro & Williams, TMLR 2024).

The method only: data, backbones, features, strategies, training, indicators, pipelines and
metrics. It never imports the harness (:mod:`benchmark`).
"""

from asvp._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()

__version__ = "0.1.0"
