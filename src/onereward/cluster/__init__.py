"""Cluster-side tools: submit pipelines to Kubeflow Pipelines, launch distributed training jobs.

- :mod:`onereward.cluster.submit`: ``onereward pipeline submit`` (KFP v2beta1 REST API: upload a
  pipeline version idempotent by spec hash, create a run, print its URL).
- :mod:`onereward.cluster.trainjob`: Kubeflow Trainer v2 ``TrainJob`` documents (built from
  :class:`onereward.cluster.config.TrainJobConfig`, validated against the vendored CRD schema) and
  the launcher that creates or reattaches to a job, streams its pods' logs, propagates failure and
  deletes the job when cancelled.
- :mod:`onereward.cluster.launch`: run one library stage (``train-reward``, ``train-policy``) as a
  TrainJob whose inputs, outputs and checkpoints live on a shared volume.
- :mod:`onereward.cluster.credentials`: bearer tokens from the environment or a kubeconfig.

Like the rest of the library this package never imports KFP at module level (compiling goes through
``onereward_kfp``, imported inside the function that needs it); the ``kubernetes`` client and
``httpx`` are imported where they are used.
"""
