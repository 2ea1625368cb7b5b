"""From result files to what a reader sees: the paper's tables, their text renderings and the figure. Never trains.

``tables`` turns result rows into the sections of the report (Table 2 per budget, Pareto fronts, the runs and their
statuses); ``render`` writes those sections as Markdown, LaTeX, Rich tables, CSV or JSON; ``plot`` draws the
Figure 4 analogue (NDCG@10 against peak memory and training time). Nothing is imported here (pandas and matplotlib
are imported by the modules that need them).
"""
