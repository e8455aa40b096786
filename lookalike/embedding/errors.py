class ModelUnavailableError(RuntimeError):
    """Weights for a model cannot be found; the message says how to supply them."""
