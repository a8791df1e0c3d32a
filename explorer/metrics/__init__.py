"""Quality metrics for masked-diffusion samples: plain functions on token ids or texts.

* :func:`unigram_entropy` -- per-sample token entropy (reference §3).
* :func:`generative_perplexity` -- Gen PPL under a judge causal LM, upstream's rules (§3).
* :func:`mauve_score`, :func:`judge_features` -- MAUVE on judge features (§3; noise ~0.005-0.01).
* :func:`orders_validity` -- exact validity of order records, per-rule violation rates;
  :func:`validity_ceiling` -- what a perfect model (the orders oracle) reaches with a sampler.
* :func:`metric_by_step` -- a metric of what the sampler would output if stopped at each step.
* :func:`get_metric` -- the same metrics by name, in the shape :func:`explorer.sweep.sweep` uses.
"""
from .entropy import unigram_entropy
from .evolution import attribute_changes, fill_argmax, metric_by_step
from .mauve import MauveResult, build_stories_reference, judge_features, mauve_score, reference_features
from .perplexity import PerplexityResult, generative_perplexity
from .registry import HIGHER_IS_BETTER, Metric, get_metric, higher_is_better
from .validity import orders_validity, per_sample_validity, validity_ceiling

__all__ = [
    "unigram_entropy", "generative_perplexity", "PerplexityResult", "mauve_score", "MauveResult",
    "judge_features", "reference_features", "build_stories_reference", "orders_validity", "per_sample_validity",
    "validity_ceiling",
    "metric_by_step", "attribute_changes", "fill_argmax", "get_metric", "Metric",
    "HIGHER_IS_BETTER", "higher_is_better",
]
