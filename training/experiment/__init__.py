"""Small-scale replications: does relation data (VSG + MRC) teach a model relations?

``heldout`` is the rule that keeps the probes out of training; ``corpus`` the training-side data (web shards
without held-out pairs, the exclusion list of the scene-graph corpus); ``probes`` the held-out probe sets in
the benchmarks' published formats; ``relations`` the experiment (``sgv experiment relations``); ``report``
its table and plot.
"""
