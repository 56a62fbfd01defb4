"""Zero-shot fine-grained evaluation: benchmark readers, metrics, pluggable scorers, the runner and the sweep.

Data flow: ``benchmarks`` reads each benchmark in its published format into typed examples; ``images``
resolves and loads their images (a missing image is counted, never fatal); ``scorers`` turn image-text pairs
into scores (ITM p(match), ITC embeddings) for our checkpoints and Hugging Face baselines; ``runner`` scores
every suite and applies ``metrics``; ``sweep`` evaluates every checkpoint of a run and follows each skill over
training steps.
"""
