"""A real single-node SLURM for the tests: munged, slurmctld and slurmd, everything under one folder.

Debian's ``slurm-wlm`` and ``munge`` packages provide the daemons (``.ci/run`` installs them when it
runs as root). Nothing outside the folder is written or read: the configuration is
``<root>/slurm.conf``, reached by the client commands through ``SLURM_CONF`` (``Cluster.env``);
munged gets its own key, socket, pid, seed and log files there (``--force``: pytest's temporary
folders are private to their user, and munged otherwise insists that everyone may reach its
socket's folder), and slurm.conf points SLURM's munge plugin at that socket (``AuthInfo``).
The node line is this machine's own (``slurmd -C``); processes are tracked by their parents
(``proctrack/linuxproc``) without cgroups (``task/none``); accounting is disabled, as on many
small clusters, so ``sacct`` answers "accounting storage is disabled". Ports are free ones picked
at start, so two test sessions on one machine do not meet.

``bin/srun`` in the folder, first on the jobs' PATH, sets ``SLURM_CONF`` and runs the real srun:
snakemake-executor-plugin-slurm-jobstep (0.6.1) removes every ``SLURM_*`` variable, ``SLURM_CONF``
included, before the ``srun`` that starts a job's step, and srun without it looks for
/etc/slurm/slurm.conf and then DNS records (a cluster whose config is there never notices).
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scancel", "sinfo", "scontrol")


def missing_requirements() -> str | None:
    """Why a SLURM cannot be started here, or None."""
    absent = [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None]
    if absent:
        return (
            f"a real SLURM needs {', '.join(absent)}: as root, apt-get install slurm-wlm munge "
            "(.ci/run does it when it runs as root)"
        )
    if os.geteuid() != 0:
        return "a real SLURM needs root: slurmd starts every job as its user"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


@dataclass
class Cluster:
    root: Path
    node: str
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def run(self, *command: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, check=False, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def logs(self) -> str:
        """The daemons' logs, for a failing test's message."""
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def wait_until_idle(self, timeout: float = 60) -> None:
        """Until the node takes jobs (slurmd registered with slurmctld)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}\n{self.logs()}")
            state = self.run("sinfo", "--noheader", "--format=%T", check=False)
            if state.returncode == 0 and state.stdout.strip() == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the node did not become idle in {timeout} s\n{self.logs()}")

    def stop(self) -> None:
        """Cancel what is left, then stop slurmd, slurmctld and munged by their recorded process ids."""
        if self.processes.get("slurmctld") and self.processes["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--user", str(os.geteuid()), check=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.run("squeue", "--noheader", check=False).stdout.strip():
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.terminate()  # SIGTERM to the process id recorded at its start: each runs in the foreground
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def slurm_conf(root: Path, node_line: str, node: str) -> str:
    return "\n".join(
        [
            "ClusterName=pcmebench-test",
            f"SlurmctldHost={node}",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={root / 'munge' / 'munge.socket'}",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "SchedulerType=sched/backfill",
            "ReturnToService=2",
            "MailProg=/bin/true",
            # SLURM's default: finished jobs stay visible to squeue for 300 s (the profile's status command)
            "MinJobAge=300",
            f"{node_line} State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def start_cluster(root: Path) -> Cluster:
    """munged, slurmctld and slurmd under ``root``, the node idle; stop() ends them."""
    root = Path(root)
    for name in ("munge", "state", "spool", "log", "run", "bin"):
        (root / name).mkdir(parents=True, exist_ok=True)
    node_line = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    node = node_line.split()[0].removeprefix("NodeName=")
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, node_line, node))
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    srun = root / "bin" / "srun"
    srun.write_text(f'#!/bin/sh\nexport SLURM_CONF={shlex.quote(str(conf))}\nexec {shutil.which("srun")} "$@"\n')
    srun.chmod(0o755)

    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in list(env):  # a test run inside someone's SLURM job must not talk to that cluster
        if name.startswith(("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_")) and name != "SLURM_CONF":
            del env[name]
    cluster = Cluster(root, node, env)
    munge = root / "munge"
    commands = {
        "munged": [
            "munged", "--foreground", "--force", f"--socket={munge / 'munge.socket'}", f"--key-file={key}",
            f"--pid-file={root / 'run' / 'munged.pid'}", f"--seed-file={munge / 'munged.seed'}",
            f"--log-file={root / 'log' / 'munged.log'}",
        ],
        "slurmctld": ["slurmctld", "-D", "-i", "-f", str(conf)],
        "slurmd": ["slurmd", "-D", "-f", str(conf)],
    }  # fmt: skip
    try:
        for name, command in commands.items():
            with (root / "log" / f"{name}.out").open("w") as out:
                cluster.processes[name] = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
            if name == "munged":
                deadline = time.monotonic() + 20
                while not (munge / "munge.socket").exists():
                    if time.monotonic() > deadline or cluster.processes[name].poll() is not None:
                        raise RuntimeError(f"munged did not start\n{cluster.logs()}")
                    time.sleep(0.1)
        cluster.wait_until_idle()
    except BaseException:
        cluster.stop()
        raise
    return cluster
