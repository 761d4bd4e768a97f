"""Feature stores, annotations, bags and the training data module."""
