"""Stage generate_candidates: randomised mask-guided candidates from a base generator.

``stage.run`` is the entry point (see docs/contracts.md); ``flux_sampler`` and ``sd_sampler`` hold
the batched samplers of the two generator families, ``sampler`` what they share.
"""

FAMILIES = ("flux_fill", "sd_inpaint")
DEFAULT_NEGATIVE_PROMPTS = "none;nsfw;blurry;low quality;blurry, low quality, distorted"
