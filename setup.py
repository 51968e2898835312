"""Package layout: the stage library under src/, plus the KFP glue folders mapped to a namespaced name.

components/ and pipelines/ stay top-level folders (the layout the project asks for) but install as
``onereward_kfp.components`` / ``onereward_kfp.pipelines`` so that no generic top-level import name
lands in site-packages.
"""

from setuptools import find_packages, setup

setup(
    package_dir={
        "": "src",
        "onereward_kfp": "kfp_glue",
        "onereward_kfp.components": "components",
        "onereward_kfp.pipelines": "pipelines",
    },
    packages=find_packages("src") + ["onereward_kfp", "onereward_kfp.components", "onereward_kfp.pipelines"],
)
