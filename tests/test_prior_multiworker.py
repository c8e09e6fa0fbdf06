"""`TransformerPrior.fit` under MultiWorkerMirroredStrategy: two workers on 127.0.0.1.

The prior shares the autoencoders' `MultiWorkerFitMixin`; this runs
tests/prior_multiworker_train.py on two loopback workers (the launcher of
tests/test_distribution_multiworker.py with another script) and checks that
both end with the same weights after two synchronous steps.
"""

import json
import os
import subprocess
import sys

import numpy as np

from tests import test_distribution_multiworker as multiworker

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prior_multiworker_train.py")


def test_prior_fits_on_two_workers_with_identical_weights(tmp_path):
    out = str(tmp_path)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in multiworker.free_ports(2)]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        with open(os.path.join(out, f"worker{index}.log"), "ab") as log:
            procs.append(subprocess.Popen(
                [sys.executable, WORKER, out], env=env, cwd=multiworker.ROOT,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))  # fmt: skip
    multiworker.wait(procs, out, timeout=240)
    chief, other = (np.load(os.path.join(out, f"weights_{i}.npz")) for i in range(2))
    assert len(chief.files) == len(other.files) > 0
    for key in chief.files:
        np.testing.assert_allclose(chief[key], other[key], rtol=0, atol=1e-6)
    with open(os.path.join(out, "logs_0.json")) as f:
        record = json.load(f)
    assert record["steps"] == 2  # 2 global batches of 8, split over the 2 workers
    assert set(record["logs"]) == {"loss", "accuracy", "bits_per_image"}
    assert all(np.isfinite(v) for v in record["logs"].values())
