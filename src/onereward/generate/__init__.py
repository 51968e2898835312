"""Stage generate_candidates: randomised mask-guided candidates from a base generator.

``stage.run`` is the entry point (see docs/contracts.md), ``config.GenerateConfig`` its settings;
``flux_sampler`` and ``sd_sampler`` hold the batched samplers of the two generator families,
``sampler`` what they share.
"""

from onereward.generate.config import DEFAULT_NEGATIVE_PROMPTS, FAMILIES

__all__ = ["DEFAULT_NEGATIVE_PROMPTS", "FAMILIES"]
