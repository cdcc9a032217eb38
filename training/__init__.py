"""Fine-tuning a bundle's weights: LoRA/QLoRA with TRL on the training split, in the step's pod
(``fine_tuning``) or as a Kubeflow Trainer v2 ``TrainJob`` over several nodes (``trainjob``).

Above ``serving`` because a TrainJob is created, watched and validated through the same Kubernetes
layer as the rollouts (``serving.kube``, ``serving.manifests``).
"""
