"""Studies: measurements of samplers on a task, built on the engine.

A task module (``explorer.tasks.orders``) defines a small language -- vocabulary, generator,
tokenizer, validator -- and imports nothing above it. A study runs samplers on a model of that
task and reads what happened: ``explorer.studies.orders`` has the validity of generated records
(``sampler_validity``), why rules broke (``error_causes``), what remasking did to records
(``repair_ledger``) and the ``evaluate`` command (``explorer evaluate-orders``).
"""
