"""Train under a memory budget, one concern a module:

- ``sizes``: budgets as people write them (``512MB``, ``2GiB``, ``1.5e9``);
- ``ladder``: the candidates of a loss, most preferred first (each loss's card declares its ladder:
  ``LossCard.ladder``; the data types ``Ladder`` and ``Candidate`` live beside the cards, in ``losses/cards.py``);
- ``plan``: the candidates a loss's ladder and its catalogue allow, before anything is measured;
- ``choice``: the first candidate whose probed peak fits (a binary search over the ladder);
- ``probe``: the measured peak of one candidate, cached;
- ``fit``: the driver that chooses, trains and checks the training peak against the budget.

Import from the modules; this package imports nothing itself. Nothing in ``rece_bench.losses`` imports ``budget``:
the arrows run from ``budget`` to the loss cards.
"""
