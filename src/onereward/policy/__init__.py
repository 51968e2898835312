"""Stage train_policy: multi-task RL of the generator against the one reward model.

- :mod:`~onereward.policy.config`: the settings (``PolicyConfig``, profile section ``policy``);
- :mod:`~onereward.policy.artifact`: the ``policy`` artifact (contract; loaders for generate/evaluate);
- :mod:`~onereward.policy.stage`: ``run()`` as numbered steps;
- :mod:`~onereward.policy.conditions`, :mod:`~onereward.policy.model`, :mod:`~onereward.policy.rollouts`,
  :mod:`~onereward.policy.rewards`, :mod:`~onereward.policy.references`: the pieces;
- :mod:`~onereward.policy.refl` (Algorithms 1 and 2), :mod:`~onereward.policy.nft` (DiffusionNFT);
- :mod:`~onereward.policy.trainer` (loop, checkpoints), :mod:`~onereward.policy.monitors`,
  :mod:`~onereward.policy.report`.
"""
