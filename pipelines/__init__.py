"""KFP pipelines: ``collect`` (select -> generate -> export), ``train`` (import -> reward SFT) and
``end_to_end`` (everything, with simulated annotators; the embedded demo).

``PIPELINES`` maps names to pipeline functions; ``compiled/<name>.yaml`` are the committed specs
(CI recompiles and fails when they are stale).
"""

from onereward_kfp.pipelines.definitions import PIPELINES

__all__ = ["PIPELINES"]
