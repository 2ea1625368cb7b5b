"""Benchmarks of the losses and of the training step, and the demo: measurements, never a trained result.

``loss`` times one loss's forward and backward and its peak memory on a synthetic batch (``bench-loss``);
``step`` times the whole shared training step, model included (``bench-step``); ``demo`` runs a small synthetic
comparison of every loss end to end. Nothing is imported here, so the CLI can list these commands without torch.
"""
