"""Multi-node fine-tuning as a Kubeflow Trainer v2 TrainJob, against the real API server.

The fine-tune step (training.trainjob) stages its inputs on "the weights PVC" (a local folder mounted at the
same path in the step and the job), renders the TrainJob (validated against the vendored CRD, accepted by
the real server as the pipeline's service account with the Role `champion manifests --trainjob` writes),
waits and picks up the result. The test plays the Trainer controller and its torch-distributed runtime
(tests/envtest/trainer_controller.py): it runs the job's own command line under torchrun, with two
data-parallel processes on CPU, and reports Complete or Failed. Not proven here: JobSet, scheduling on GPU
nodes, a ReadWriteMany volume shared by real nodes.
"""

from __future__ import annotations

import json

import pytest

from champion.errors import ConfigError, DeployError
from champion.jsonl import read_jsonl
from champion.weights import verify_weights
from prompts import load_prompt
from serving.kube import TRAIN_JOB, api_client
from serving.manifests import render_rbac
from tests.envtest.trainer_controller import TrainerStandIn
from training.fine_tuning import FineTuneSettings
from training.trainjob import TrainJobOptions, render_trainjob, run_trainjob

PROMPT = load_prompt("qa-concise")
ROWS = read_jsonl("pipelines/data/demo_eval.jsonl")[:12]


@pytest.fixture
def deployer(kube_server, kube_namespace, tmp_path):
    kube_server.apply(render_rbac(kube_namespace, trainjob=True))
    token = kube_server.service_account_token(kube_namespace, "pipeline-runner")
    return api_client(kube_server.kubeconfig(tmp_path / "kubeconfig", token, kube_namespace))


def jobs(kube_server, namespace: str) -> list[dict]:
    return kube_server.admin.call_api(
        TRAIN_JOB.path(namespace),
        "GET",
        response_type="object",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )["items"]


def options(namespace: str, mount, **overrides) -> TrainJobOptions:
    values = dict(
        namespace=namespace,
        image="registry.example.com/champion-gpu@sha256:" + "b" * 64,
        pvc="champion-weights",
        mount=str(mount),
        nodes=1,
        gpus_per_node=2,
        timeout_s=600.0,
        poll_s=0.2,
    )
    return TrainJobOptions(**{**values, **overrides})


def test_a_trainjob_trains_data_parallel_and_the_step_picks_up_the_tuned_weights(
    kube_server, kube_namespace, deployer, smollm2, tmp_path
):
    with TrainerStandIn(kube_server.admin, kube_namespace, processes=2) as trainer:
        result = run_trainjob(
            deployer,
            smollm2.path,
            tmp_path / "tuned",
            ROWS,
            PROMPT,
            FineTuneSettings(steps=3, batch_size=2),
            options(kube_namespace, tmp_path / "pvc"),
        )
    (job,) = trainer.started
    assert job["spec"]["trainer"]["numProcPerNode"] == 2 and job["spec"]["runtimeRef"]["name"] == "torch-distributed"
    patch = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    pod = patch["template"]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "champion-weights"
    assert result.trained and result.digest == verify_weights(tmp_path / "tuned") != smollm2.digest
    record = json.loads((tmp_path / "tuned" / "champion-fine-tune.json").read_text())
    assert len(record["losses"]) == 3 and record["trainer"].startswith("trl.SFTTrainer")
    assert record["processes"] == 2  # data-parallel over the runtime's two processes (torchrun, gloo on CPU)
    # The finished job is deleted; its inputs and result stay on the volume for a re-run to adopt.
    assert jobs(kube_server, kube_namespace) == []


def test_a_failed_trainjob_is_an_error_with_its_message_and_is_kept(
    kube_server, kube_namespace, deployer, smollm2, tmp_path
):
    broken = [{"id": "x", "question": "q"}]  # no reference: the job's own fine-tune refuses it
    with TrainerStandIn(kube_server.admin, kube_namespace) as trainer:
        with pytest.raises(DeployError, match="failed: TrainingFailed") as info:
            run_trainjob(
                deployer,
                smollm2.path,
                tmp_path / "tuned",
                broken,
                PROMPT,
                FineTuneSettings(steps=1),
                options(kube_namespace, tmp_path / "pvc", gpus_per_node=0),
            )
    assert "kubectl logs" in info.value.fix and trainer.started
    kept = jobs(kube_server, kube_namespace)
    assert len(kept) == 1 and not (tmp_path / "tuned").exists()


def test_without_the_trainjob_role_the_step_names_the_manifests_to_apply(
    kube_server, kube_namespace, smollm2, tmp_path
):
    kube_server.apply(render_rbac(kube_namespace))  # the deployer's Role, without trainjobs
    token = kube_server.service_account_token(kube_namespace, "pipeline-runner")
    client = api_client(kube_server.kubeconfig(tmp_path / "kubeconfig", token, kube_namespace))
    with pytest.raises(DeployError, match="trainjobs") as info:
        run_trainjob(
            client,
            smollm2.path,
            tmp_path / "t",
            ROWS,
            PROMPT,
            FineTuneSettings(steps=1),
            options(kube_namespace, tmp_path),
        )
    assert "--trainjob" in info.value.fix


def test_the_rendered_trainjob_is_held_to_the_crd_and_accepted_by_the_server(kube_server, kube_namespace):
    job = render_trainjob(
        "champion-ft-0123456789ab",
        "/mnt/w/trainjobs/x",
        FineTuneSettings(steps=4),
        options(kube_namespace, "/mnt/w", nodes=4, gpus_per_node=8),
    )
    assert job["spec"]["trainer"]["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "8"}
    assert job["spec"]["trainer"]["numNodes"] == 4
    kube_server.apply([job], dry_run=True)


def test_no_shared_volume_is_a_clear_error():
    with pytest.raises(ConfigError, match="needs shared storage") as info:
        TrainJobOptions(namespace="team-a", image="i", pvc="", mount="")
    assert "CHAMPION_WEIGHTS_PVC" in info.value.fix
