"""Multi-node fine-tuning on Kubeflow Trainer v2: the fine-tune step as a ``TrainJob``.

With ``trainer=trainjob`` the fine-tune step does not train in its own pod. It

1. stages the job's inputs on the shared weights volume (the PVC the pipeline was compiled with, mounted at
   ``weights_cache``): the base weights, the training split and the bundle's prompt, under
   ``trainjobs/<job>/``;
2. renders a ``trainer.kubeflow.org/v1alpha1`` TrainJob on the ``torch-distributed`` runtime (``nodes`` x
   ``gpus`` processes, each running ``torchrun -m training.trainjob`` with the same settings as a local
   fine-tune), the volume patched into the runtime's ``node`` job, validated against the TrainJob CRD, and
   creates it through the Kubernetes API;
3. waits for its ``Complete`` condition (``Failed`` is an error carrying the job's message), and
4. picks up the tuned folder the job's rank 0 wrote beside the inputs, verified against its manifest.

The rest of the pipeline does not know the difference: the step returns the same tuned folder and digest.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from champion.digests import sha256_json
from champion.errors import ConfigError, DeployError
from champion.jsonl import read_jsonl, write_jsonl
from champion.weights import MANIFEST_NAME, verify_weights
from prompts import PromptTemplate
from serving.kube import TRAIN_JOB as trainjobs
from serving.kube import KubeObjects, condition
from serving.manifests import validate_strict
from training.fine_tuning import FineTuneResult, FineTuneSettings, fine_tune

API_VERSION = "trainer.kubeflow.org/v1alpha1"
VOLUME = "champion-weights"
RBAC_HINT = (
    "apply the Role from `champion manifests --trainjob` (the pipeline's service account needs get, create and "
    "delete on trainjobs.trainer.kubeflow.org)."
)


@dataclass(frozen=True)
class TrainJobOptions:
    namespace: str
    image: str
    pvc: str  # the weights PVC, shared by the step and the job's nodes
    mount: str  # where it is mounted, in the step and in the job
    nodes: int = 1
    gpus_per_node: int = 1
    gpu_type: str = "nvidia.com/gpu"
    runtime: str = "torch-distributed"
    timeout_s: float = 86_400.0
    poll_s: float = 15.0

    def __post_init__(self) -> None:
        if not self.pvc or not self.mount:
            raise ConfigError(
                "trainer=trainjob needs shared storage for the job's inputs and its result, and this pipeline has none.",
                "compile with a weights PVC (CHAMPION_WEIGHTS_PVC=<claim> ./compile.sh), readable and writable by "
                "every node (ReadWriteMany), or use trainer=local.",
            )
        if self.nodes < 1 or self.gpus_per_node < 0:
            raise ConfigError(
                f"a TrainJob needs at least one node and no negative GPU count, got {self.nodes} x {self.gpus_per_node}.",
                "set trainjob_nodes >= 1 and fine_tune_gpu_count >= 0.",
            )


def job_name(base_digest: str, settings: FineTuneSettings, train_digest: str) -> str:
    """A name that is the same for the same inputs (a re-run adopts a job that already finished)."""

    return "champion-ft-" + sha256_json([base_digest, asdict(settings), train_digest])[:12]


def render_trainjob(name: str, workdir: str, settings: FineTuneSettings, options: TrainJobOptions) -> dict:
    """The TrainJob: every node runs ``torchrun -m training.trainjob`` on the staged inputs under ``workdir``."""
    resources = {options.gpu_type: str(options.gpus_per_node)} if options.gpus_per_node else {}
    container = {
        "name": "node",
        "volumeMounts": [{"name": VOLUME, "mountPath": options.mount}],
    }
    job = {
        "apiVersion": API_VERSION,
        "kind": "TrainJob",
        "metadata": {
            "name": name,
            "namespace": options.namespace,
            "labels": {"app.kubernetes.io/managed-by": "champion", "champion.io/step": "fine-tune"},
        },
        "spec": {
            "runtimeRef": {
                "name": options.runtime,
                "kind": "ClusterTrainingRuntime",
                "apiGroup": "trainer.kubeflow.org",
            },
            "trainer": {
                "image": options.image,
                # The torch-distributed runtime sets PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK and the master
                # address; torchrun reads them, and the trainer runs data-parallel over every process.
                "command": ["torchrun", "--module", "training.trainjob"],
                "args": ["--workdir", workdir, "--settings", json.dumps(asdict(settings), sort_keys=True)],
                "numNodes": options.nodes,
                "numProcPerNode": max(1, options.gpus_per_node),
                **({"resourcesPerNode": {"requests": resources, "limits": resources}} if resources else {}),
            },
            "runtimePatches": [
                {
                    "manager": "champion.io/fine-tune",
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {
                                        "name": "node",
                                        "template": {
                                            "spec": {
                                                "template": {
                                                    "spec": {
                                                        "volumes": [
                                                            {
                                                                "name": VOLUME,
                                                                "persistentVolumeClaim": {"claimName": options.pvc},
                                                            }
                                                        ],
                                                        "containers": [container],
                                                    }
                                                }
                                            }
                                        },
                                    }
                                ]
                            }
                        }
                    },
                }
            ],
            "activeDeadlineSeconds": int(options.timeout_s),
        },
    }

    validate_strict(job)
    return job


def stage(workdir: Path, base_dir: Path, train_rows: list[dict], prompt) -> None:
    """The job's inputs on the shared volume: base weights, training split, the bundle's prompt."""

    if (workdir / "base").exists():
        shutil.rmtree(workdir / "base")
    shutil.copytree(base_dir, workdir / "base")
    write_jsonl(train_rows, workdir / "train.jsonl")
    (workdir / "prompt.json").write_text(prompt.model_dump_json(), encoding="utf-8")


def run_trainjob(
    client,
    base_dir: Path,
    out_dir: Path,
    train_rows: list[dict],
    prompt,
    settings: FineTuneSettings,
    options: TrainJobOptions,
) -> FineTuneResult:
    """Stage, submit, wait, pick up (see the module docstring). The finished job is deleted; a failed one is
    kept for its logs."""

    base_digest = verify_weights(base_dir)
    name = job_name(base_digest, settings, sha256_json(train_rows))
    workdir = Path(options.mount) / "trainjobs" / name
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "out" / MANIFEST_NAME).is_file():
        stage(workdir, base_dir, train_rows, prompt)
    kube = KubeObjects(client, options.namespace, rbac_hint=RBAC_HINT)
    body = render_trainjob(name, str(workdir), settings, options)
    if kube.get(trainjobs, name) is None:
        kube.create(body)
    deadline = time.monotonic() + options.timeout_s
    while True:
        job = kube.get(trainjobs, name)
        if job is None:
            raise DeployError(
                f"the TrainJob {options.namespace}/{name} disappeared while the fine-tune step waited for it.",
                "find out who deleted it (`kubectl get events`), then re-run the pipeline.",
            )
        failed, complete = condition(job, "Failed"), condition(job, "Complete")
        if failed.get("status") == "True":
            raise DeployError(
                f"the TrainJob {options.namespace}/{name} failed: {failed.get('reason', '')}: {failed.get('message', '')}",
                f"read its logs (`kubectl logs -n {options.namespace} -l jobset.sigs.k8s.io/jobset-name={name}`); it "
                "was kept for that. Delete it before re-running.",
            )
        if complete.get("status") == "True":
            break
        if time.monotonic() >= deadline:
            raise DeployError(
                f"the TrainJob {options.namespace}/{name} did not complete within {options.timeout_s:.0f} s.",
                "raise trainjob_timeout_s, or check why it is not scheduled (Kueue admission, free GPUs).",
            )
        time.sleep(options.poll_s)
    tuned = workdir / "out"
    if not (tuned / MANIFEST_NAME).is_file():
        raise DeployError(
            f"the TrainJob {name} completed but left no tuned weights in {tuned}.",
            "check that every node mounts the same volume read-write (ReadWriteMany) at the same path.",
        )
    digest = verify_weights(tuned)  # a torn or tampered copy is refused here
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(tuned, out_dir)
    record = json.loads((tuned / "champion-fine-tune.json").read_text(encoding="utf-8"))
    kube.delete(trainjobs, name)
    return FineTuneResult(
        out_dir,
        digest,
        trained=True,
        train_examples=int(record["train_examples"]),
        losses=list(record["losses"]),
        eval_examples=int(record.get("eval_examples", 0)),
        eval_loss_before=record.get("eval_loss_before"),
        eval_loss_after=record.get("eval_loss_after"),
    )


def main(argv: list[str] | None = None) -> None:
    """What each process of the TrainJob runs (under torchrun): the same fine-tune as a local step, on the
    staged inputs; rank 0 writes ``out/``."""

    parser = argparse.ArgumentParser(description="champion fine-tuning inside a Kubeflow TrainJob")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--settings", required=True, help="FineTuneSettings as JSON")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    prompt = PromptTemplate.model_validate_json((workdir / "prompt.json").read_text(encoding="utf-8"))
    settings = FineTuneSettings(**json.loads(args.settings))
    fine_tune(workdir / "base", workdir / "out", read_jsonl(workdir / "train.jsonl"), prompt, settings)


if __name__ == "__main__":
    main()
