"""Zero-shot fine-grained evaluation: benchmark readers, pluggable scorers, per-example records, tables, sweep.

Data flow: ``benchmarks`` reads each benchmark in its published format into typed examples (``sampling`` draws
the ``--limit`` sample); ``images`` resolves and loads their images (a missing image is counted, never fatal);
``scorers`` / ``ours`` (over ``scorer_base``) turn image-text pairs into scores (ITM p(match) and logit, ITC
embeddings); ``runner`` scores every suite into per-example records (``retrieval`` for the galleries);
``tables`` computes the published figures from records, ``uncertainty`` their intervals and paired comparisons;
``scorefiles`` reads and writes records (ours and the companion study's released outputs), ``rescore``
recomputes tables from them; ``reports`` writes results and Markdown with ``provenance``; ``sweep`` evaluates
every checkpoint of a run and selects on dev sets. ``metrics`` holds the ranking primitives.
"""
