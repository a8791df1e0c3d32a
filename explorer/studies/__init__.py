"""Studies: measurements of samplers on a task, built on the engine.

A task module (``explorer.tasks.orders``) defines a small language -- vocabulary, generator,
tokenizer, validator -- and imports nothing above it. A study runs samplers on a model of that
task and reads what happened:

* ``explorer.studies.ledger`` -- what remasking did, in one vocabulary (hit / miss for a remask,
  fix / harm / neutral for its rewrite): :func:`remask_ledger` and :func:`ledger_summary` (one row
  per remask; precision, recall, fixes and harms per 100 model calls), the same facts per rule for
  a story (:func:`find_fixes`, :func:`broken_rules`, :func:`suggest_revisit`), per record episode
  (:func:`repair_ledger`) and why final records are broken (:func:`error_causes`);
* ``explorer.studies.orders`` -- the validity of generated records (``sampler_validity``);
* ``explorer.studies.repair`` -- the planted-error repair study (plant, refine, count).
"""
from .ledger import (OUTCOMES, broken_rules, error_causes, find_fixes, ledger_summary, record_broken,
                     remask_ledger, repair_ledger, summarise_repairs, suggest_revisit)

__all__ = ["OUTCOMES", "remask_ledger", "ledger_summary", "record_broken", "broken_rules", "find_fixes",
           "suggest_revisit", "repair_ledger", "summarise_repairs", "error_causes"]
