"""The sequential recommender the losses train: SASRec as the paper uses it (``sasrec``), which maps a batch of
left-padded item sequences to hidden states (B, L, D) and exposes the tied item table (C, D) the losses score."""
