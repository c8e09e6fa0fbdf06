"""A multi-worker job whose workers cannot all connect stops with a message.

TensorFlow's `MultiWorkerMirroredStrategy()` waits for every worker of
`TF_CONFIG` without a limit and without a word (a worker not started, a wrong
port), and ignores `SIGTERM` meanwhile; a port already taken (two workers given
the same `task.index`) was an `UnknownError: Could not start gRPC server`.
Each worker here is a subprocess, killed in any case.
"""

import json
import os
import subprocess
import sys
import time

from tests.test_distribution_multiworker import ROOT, free_ports, kill

STRATEGY = "from trainers import distribute; distribute.make_strategy('multi_worker')"


def _start(ports, index, timeout):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT,
               ZOO_WORKER_TIMEOUT=str(timeout))
    env["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
        "task": {"type": "worker", "index": index},
    })
    return subprocess.Popen([sys.executable, "-c", STRATEGY], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _finish(proc, limit):
    try:
        output = proc.communicate(timeout=limit)[0].decode(errors="replace")
    finally:
        kill([proc])
    # TensorFlow's C++ logs of the shutdown may follow the traceback.
    errors = [line for line in output.splitlines() if line.startswith("ValueError: ")]
    return (errors or [output[-3000:]])[-1], proc.returncode


def test_a_worker_alone_stops_after_the_timeout_naming_the_missing_one():
    ports = free_ports(2)
    started = time.monotonic()
    last_line, status = _finish(_start(ports, 0, timeout=3), limit=60)
    assert status == 1
    assert time.monotonic() - started < 60
    assert last_line.startswith("ValueError: worker 0 (127.0.0.1:")
    assert f"worker 1 (127.0.0.1:{ports[1]})" in last_line
    assert "task.index" in last_line and "ZOO_WORKER_TIMEOUT" in last_line


def test_two_workers_with_the_same_index_are_told_the_port_is_taken():
    ports = free_ports(2)
    first = _start(ports, 0, timeout=30)
    try:
        time.sleep(5)  # the first one listens on ports[0] and waits for worker 1
        last_line, status = _finish(_start(ports, 0, timeout=30), limit=60)
    finally:
        kill([first])
    assert status == 1
    assert last_line.startswith(f"ValueError: worker 0 of TF_CONFIG could not listen on "
                                f"127.0.0.1:{ports[0]}: the port is taken")
    assert "own `task.index`" in last_line
