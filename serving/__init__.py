"""Serving a bundle: the local predictor and the prompt transformer (KServe ``Model`` classes), their
OpenAI-compatible route, request logging and its CloudEvents sink; the Kubernetes objects that serve a
promoted bundle (``InferenceService`` or ``LLMInferenceService``), the rollouts that apply them through
``serving.kube`` (smoke test, shadow, canary, promote or undo) and the dashboards that watch them.
"""
