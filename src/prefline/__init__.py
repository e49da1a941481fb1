"""prefline: preference optimisation of AI models, from feedback event to deployed model."""

__version__ = "0.1.0"
