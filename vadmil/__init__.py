"""vadmil: weakly supervised video anomaly detection with multiple-instance learning on frozen backbones."""

__version__ = "0.1.0"
