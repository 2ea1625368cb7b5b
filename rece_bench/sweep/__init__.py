"""Sweeps: a grid of (loss, budget, seed) jobs, each trained once, restartable at any point, on one of two engines.

``grid`` owns the grid, its schedule, the restart rule (a job is done when a final result matches it) and the
local engine that runs the jobs one after another in this process; ``ray_engine`` runs the same schedule as Ray
tasks, on this machine or a cluster. Nothing is re-exported here: ``rece_bench.sweep.grid`` is the one path to the
sweep itself, and importing this package costs nothing.
"""
