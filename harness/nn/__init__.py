"""Networks and the one training loop shared by every method and task: a time-conditioned
MLP (points), U-Net (images) and transformer (tokens), a character LSTM (text drafts)."""
