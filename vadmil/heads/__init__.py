"""MIL scoring heads: plain ``nn.Module``s mapping snippet features [B, T, D] to per-snippet scores [B, T]."""
