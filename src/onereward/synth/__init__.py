"""The synthetic world: procedural scenes, the pool writer, the pixel oracle and synthetic candidates.

- :mod:`onereward.synth.world`: scenes, items and prompts (the vocabulary tables).
- :mod:`onereward.synth.stage`: the synthesize_pool stage: ``run`` and ``make_pool`` (a ``pool`` artifact).
- :mod:`onereward.synth.oracle`: ``score`` / ``score_all`` of every evaluation dimension from pixels.
- :mod:`onereward.synth.candidates`: ``make_candidates`` (a ``candidates`` artifact of graded results).
"""
