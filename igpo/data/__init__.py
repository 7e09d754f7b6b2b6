"""The data stages of the pipeline: ingest of the real datasets and the demo task, and rewriting of
reasoning traces to a token budget (SPEC section 4, steps ``ingest`` and ``rewrite``).

- :mod:`igpo.data.schema`: the canonical table (id, source, split, question, reasoning, answer, metadata)
  and the quarantine table, with Parquet I/O.
- :mod:`igpo.data.ingest`: loaders of MetaMathQA, OpenR1-Math-220k, GSM8K, MATH500 and AMC, quarantine of
  bad rows, n-gram decontamination; :func:`~igpo.data.ingest.ingest` is the entry point.
- :mod:`igpo.data.demo_task`: the seeded synthetic task the laptop pipeline trains on.
- :mod:`igpo.data.rewrite`: :func:`~igpo.data.rewrite.rewrite_traces` with the openai, transformers and
  extractive backends.
- :mod:`igpo.data.config`: every config model of these stages.
"""
