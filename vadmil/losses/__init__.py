"""MIL losses: ``nn.Module``s taking (folded head output, batch); label-dependent selection lives here."""
