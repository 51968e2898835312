"""One thin KFP component per stage: typed artifacts in, one call into the ``onereward`` library, artifacts out.

Each module defines one ``@dsl.component``; the function body imports the stage's ``run`` from the
library (installed in the image) and publishes the artifact's manifest, report and metrics.
"""
