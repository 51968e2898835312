"""Stage evaluate: benchmark trained policies against their base (paper section 5.2, Table 2, Figure 7).

Entry points: :func:`onereward.evaluate.stage.run` (``onereward evaluate``) and
:func:`onereward.evaluate.stage.import_human` (``onereward evaluate-human``); settings in
:class:`onereward.evaluate.config.EvaluateConfig`.
"""
