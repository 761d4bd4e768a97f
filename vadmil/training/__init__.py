"""Fitting a head: the one LightningModule, input standardisation, the oracle callback and `train(cfg)`."""
