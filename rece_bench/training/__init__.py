"""Training a model: the one step every caller shares, a run's life from start to result, and what it measures.

``step`` is the shared training step (forward, loss, backward, optimiser) that the trainer and ``bench-step`` both
run; ``session`` owns a run's state on disk (its identity, the run lock, checkpoints to resume from, the final
result); ``driver`` trains a run end to end (epochs, validation, early stopping, budgets, faults); ``evaluate`` and
``metrics`` score a model on the held-out items; ``checkpoint`` writes and reads the saved states. Nothing is
imported here: import the module you need (most of them import torch).
"""
