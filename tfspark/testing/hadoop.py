"""A real single-node HDFS + YARN cluster for tests, run from Hadoop jars on Maven Central.

Nothing is mocked: a NameNode, a DataNode, a ResourceManager and a NodeManager are started
as plain ``java`` processes, every one bound to 127.0.0.1 on free ports chosen at start.
Only Java and Maven are needed; the jars are fetched once (``conf/hadoop/pom.xml``) into
``$TFSPARK_HADOOP_HOME`` (default ``~/.cache/tfspark/hadoop-<version>``). Maven's jars have no
``libhadoop.so``: the NodeManager gets one small class of ours instead, which sets local file
permissions in-process as libhadoop would (:func:`nio_chmod_classes`).

From Python::

    with HadoopCluster("/tmp/hc") as cluster:
        os.environ.update(cluster.env())     # HADOOP_CONF_DIR for Spark / tfspark.fs
        ... cluster.default_fs, cluster.webhdfs_url, cluster.rm_address ...

(the daemons get SIGTERM if this Python process dies, even by SIGKILL: Linux's
PR_SET_PDEATHSIG, see ``tfspark.testing._process``)

From a shell (the daemons keep running after the command returns)::

    python -m tfspark.testing.hadoop start --dir /tmp/hc    # prints `export ...` lines
    python -m tfspark.testing.hadoop status --dir /tmp/hc
    python -m tfspark.testing.hadoop stop --dir /tmp/hc
"""
from __future__ import annotations

import argparse
import fcntl
import getpass
import grp
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple
from xml.sax.saxutils import escape

from tfspark._node.processes import alive
from tfspark.testing import hadoop_security as security
from tfspark.testing._process import spawn

if TYPE_CHECKING:
    from tfspark.testing.kdc import KDC

HADOOP_VERSION = "3.5.0"
# the Maven project listing the jars; in a source checkout it is conf/hadoop/pom.xml
POM = Path(os.environ.get("TFSPARK_HADOOP_POM")
           or Path(__file__).resolve().parents[2] / "conf" / "hadoop" / "pom.xml")
STATE_FILE = "cluster.json"

# Hadoop reflects into JDK internals; Java 17 refuses that unless these packages are opened.
JAVA_17_OPENS = [f"--add-opens=java.base/{pkg}=ALL-UNNAMED" for pkg in (
    "java.lang", "java.lang.reflect", "java.util", "java.util.concurrent", "java.io",
    "java.net", "java.nio", "sun.nio.ch", "sun.net.util", "sun.security.util")]

MAIN_CLASSES = {
    "namenode": "org.apache.hadoop.hdfs.server.namenode.NameNode",
    "datanode": "org.apache.hadoop.hdfs.server.datanode.DataNode",
    "resourcemanager": "org.apache.hadoop.yarn.server.resourcemanager.ResourceManager",
    "nodemanager": "org.apache.hadoop.yarn.server.nodemanager.NodeManager",
}

LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR
log4j.logger.org.eclipse.jetty=WARN
"""


class HadoopClusterError(RuntimeError):
    """The test cluster could not be fetched, configured or started."""


# ---------------------------------------------------------------------------------------------
# jars and java


def hadoop_home() -> Path:
    """Folder of the jar cache (``lib/``; ``m2/`` is Maven's repository while fetching)."""
    default = Path.home() / ".cache" / "tfspark" / f"hadoop-{HADOOP_VERSION}"
    return Path(os.environ.get("TFSPARK_HADOOP_HOME", default)).expanduser()


def ensure_jars(home: Optional[Path] = None) -> Path:
    """Return the folder of Hadoop jars, downloading them with Maven on first use."""
    home = Path(home or hadoop_home())
    lib = home / "lib"
    _build_once(home, lambda: _jars_complete(lib), lambda: _fetch_jars(home, lib))
    return lib


def _build_once(lock_dir: Path, built: Callable[[], bool], build: Callable[[], None]) -> None:
    """``build()`` unless ``built()``, under a file lock in ``lock_dir``: another process (a
    parallel test run, the Docker build) may be building the same thing right now."""
    if built():
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built():
            build()


def _jars_stamp() -> str:
    """What a complete jar folder was fetched for: the version and the pom's content."""
    pom = hashlib.sha256(POM.read_bytes()).hexdigest()[:16] if POM.exists() else "no-pom"
    return f"{HADOOP_VERSION} {pom}\n"


def _jars_complete(lib: Path) -> bool:
    stamp = lib / ".complete"
    return stamp.exists() and stamp.read_text() == _jars_stamp()


def _fetch_jars(home: Path, lib: Path) -> None:
    mvn = shutil.which("mvn")
    if not mvn:
        raise HadoopClusterError(f"Hadoop jars are not in {lib} and `mvn` is not on PATH "
                                 "to fetch them (install Maven, or set TFSPARK_HADOOP_HOME)")
    if not POM.exists():
        raise HadoopClusterError(f"{POM} is missing; it lists the Hadoop jars to fetch")
    staging = home / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [mvn, "-q", "-B", "-f", str(POM), f"-Dmaven.repo.local={home / 'm2'}",
           "dependency:copy-dependencies", f"-DoutputDirectory={staging}"]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise HadoopClusterError(f"fetching Hadoop jars failed: {' '.join(cmd)}\n"
                                 f"{_tail(done.stdout)}")
    (staging / ".complete").write_text(_jars_stamp())
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    shutil.rmtree(home / "m2", ignore_errors=True)  # only lib/ is used from now on


def java_home() -> str:
    """JAVA_HOME from the environment, else derived from the ``java`` on PATH."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if not java:
        raise HadoopClusterError("`java` is not on PATH and JAVA_HOME is not set")
    return str(Path(os.path.realpath(java)).parent.parent)


def daemon_command(name: str, conf_dir: Path, lib: Path, log_dir: Path, heap: str = "512m",
                   args=(), classpath_first=(), classpath_last=(),
                   jvm_options=()) -> List[str]:
    """The ``java`` command line of the Hadoop daemon ``name`` (a key of MAIN_CLASSES, or
    ``namenode-format``) run from the jars in ``lib`` with the configuration (and web app
    folders) in ``conf_dir``; ``-Dproc_<name>`` marks the process, as Hadoop's scripts do."""
    main_class = MAIN_CLASSES[name.split("-")[0]]
    classpath = [*map(str, classpath_first), str(conf_dir), f"{lib}/*", *map(str, classpath_last)]
    return [str(Path(java_home()) / "bin" / "java"), f"-Xmx{heap}",
            "-Djava.net.preferIPv4Stack=true", f"-Dhadoop.log.dir={log_dir}",
            f"-Dhadoop.home.dir={Path(lib).parent}", f"-Dproc_{name}", *JAVA_17_OPENS,
            *jvm_options, "-cp", ":".join(classpath), main_class, *args]


#: Java source of the NodeManager's local file system (see :func:`nio_chmod_classes`)
NIO_CHMOD_SOURCE = POM.parent / "NioChmodLocalFs.java"
NIO_CHMOD_CLASS = "org.apache.hadoop.fs.local.NioChmodLocalFs"


def nio_chmod_classes(lib: Path) -> Optional[Path]:
    """Compiled :data:`NIO_CHMOD_SOURCE` (once, beside the jars), or None without a JDK's
    ``javac`` or the source.

    Hadoop from Maven Central has no libhadoop.so, so every local ``setPermission`` forks
    ``chmod`` (4-5 ms), and the NodeManager sets the permissions of every file it localizes
    (a packed virtualenv: 25,000 files, 100 s). With this class the NodeManager makes the same
    chmod(2) call in-process, as libhadoop would."""
    javac = Path(java_home()) / "bin" / "javac"
    if not NIO_CHMOD_SOURCE.exists() or not os.access(javac, os.X_OK):
        return None
    source = NIO_CHMOD_SOURCE.read_bytes()
    out = Path(lib).parent / "nio-chmod" / hashlib.sha256(source).hexdigest()[:16]

    def compile_class() -> None:
        shutil.rmtree(out, ignore_errors=True)
        done = subprocess.run([str(javac), "-nowarn", "-cp", f"{lib}/*", "-d", str(out),
                               str(NIO_CHMOD_SOURCE)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=300)
        if done.returncode != 0:
            raise HadoopClusterError(f"compiling {NIO_CHMOD_SOURCE} failed:\n"
                                     f"{_tail(done.stdout)}")
        (out / ".complete").write_text("")

    _build_once(out.parent, (out / ".complete").exists, compile_class)
    return out


def write_webapps(conf_dir: Path) -> None:
    """The hadoop-hdfs jar on Maven Central leaves out the web UI; its HTTP servers (which
    carry WebHDFS and JMX) only need the web app folders on the classpath (in ``conf_dir``)."""
    for webapp in ("hdfs", "datanode", "secondary"):
        page = Path(conf_dir) / "webapps" / webapp / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(f"<html><body>{webapp}: no web UI in this cluster</body></html>\n")


# ---------------------------------------------------------------------------------------------
# small helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(text: str, lines: int = 60, width: int = 400) -> str:
    """The last ``lines`` lines of ``text``, each cut to ``width`` characters."""
    return "\n".join(line if len(line) <= width else line[:width] + " ..."
                     for line in text.splitlines()[-lines:])


def _file_tail(path: Path, lines: int = 60) -> str:
    try:
        return _tail(path.read_text(errors="replace"), lines)
    except OSError as e:
        return f"(cannot read {path}: {e})"


def _admin_env(extra: str = "") -> str:
    """The NodeManager's ``yarn.nodemanager.admin-env``: what every container gets."""
    return f"MALLOC_ARENA_MAX=$MALLOC_ARENA_MAX,JAVA_HOME={java_home()}" + (
        f",{extra}" if extra else "")


def _write_site(path: Path, props: Dict[str, object]) -> None:
    body = "".join(f"  <property><name>{escape(k)}</name><value>{escape(str(v))}</value>"
                   "</property>\n" for k, v in props.items())
    path.write_text(f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n')


def _get_json(url: str, timeout: float = 5.0) -> dict:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


def hdfs_takes_writes(namenode_http_url: str, get_json=None) -> bool:
    """Whether the NameNode at ``namenode_http_url`` counts a live DataNode with free space and
    has left safe mode (its JMX beans, read with ``get_json``; raises OSError/ValueError while
    it is not answering)."""
    get_json = get_json or _get_json

    def bean(name: str) -> dict:
        beans = get_json(f"{namenode_http_url}/jmx?qry=Hadoop:service=NameNode,name={name}")
        return beans["beans"][0] if beans["beans"] else {}

    state = bean("FSNamesystemState")
    return (state.get("NumLiveDataNodes", 0) >= 1 and state.get("CapacityRemaining", 0) > 0
            and bean("NameNodeInfo").get("Safemode") == "")


def _descendants(pid: int) -> List[int]:
    """Every live process below ``pid`` (YARN containers run in their own sessions)."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int, grace: float = 5.0) -> None:
    """SIGTERM ``pid`` and all its descendants, then SIGKILL whatever is left after ``grace``."""
    pids = [pid] + _descendants(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not any(alive(p) for p in pids):
            return


# ---------------------------------------------------------------------------------------------
# the cluster


class HadoopCluster:
    """NameNode + DataNode (+ ResourceManager + NodeManager when ``yarn``) under ``base_dir``.

    ``base_dir`` gets ``conf/`` (the HADOOP_CONF_DIR), ``logs/<daemon>.log`` and the data of
    every daemon.  The OS user running it is the HDFS superuser; permissions are enforced.
    """

    def __init__(self, base_dir, yarn: bool = True, start_timeout: float = 300.0,
                 nm_memory_mb: int = 8192, nm_vcores: int = 4, daemon_heap: str = "512m",
                 die_with_parent: bool = True, kdc: Optional["KDC"] = None,
                 token_renew_interval_s: Optional[float] = None,
                 token_max_lifetime_s: Optional[float] = None):
        self.base_dir = Path(base_dir).resolve()
        # Kerberos: with a started KDC every daemon logs in from a keytab, RPC and WebHDFS
        # demand Kerberos or a delegation token, block access tokens are on; the delegation
        # tokens' renew interval and max lifetime can be made short to test renewal
        self.kdc = kdc
        self.token_renew_interval_s = token_renew_interval_s
        self.token_max_lifetime_s = token_max_lifetime_s
        self.keytabs: Dict[str, Path] = {}
        self._fixture_env: Dict[str, str] = {}
        # daemons get SIGTERM if this process dies (a killed test run leaves no daemons);
        # the command line turns it off so the daemons outlive `start`
        self.die_with_parent = die_with_parent
        self.yarn = yarn
        self.start_timeout = start_timeout
        self.nm_memory_mb = nm_memory_mb
        self.nm_vcores = nm_vcores
        self.daemon_heap = daemon_heap
        self.user = getpass.getuser()
        self.ports: Dict[str, int] = {}
        self.pids: Dict[str, int] = {}
        self._procs: Dict[str, subprocess.Popen] = {}
        self.lib: Optional[Path] = None
        self._nio_chmod: Optional[Path] = None
        self.start_seconds: Optional[float] = None

    # -- public properties ---------------------------------------------------------------------

    @property
    def conf_dir(self) -> Path:
        return self.base_dir / "conf"

    @property
    def nodemanager_conf_dir(self) -> Path:
        """Settings of the NodeManager alone, ahead of :attr:`conf_dir` on its classpath."""
        return self.base_dir / "conf-nodemanager"

    @property
    def log_dir(self) -> Path:
        return self.base_dir / "logs"

    @property
    def default_fs(self) -> str:
        return f"hdfs://127.0.0.1:{self.ports['nn_rpc']}"

    @property
    def webhdfs_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['nn_http']}"

    @property
    def rm_address(self) -> str:
        return f"127.0.0.1:{self.ports['rm']}"

    @property
    def rm_web_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['rm_web']}"

    @property
    def bin_dir(self) -> Path:
        """``hdfs`` and ``yarn`` commands for this cluster (``hdfs dfs``, ``yarn logs``,
        ``yarn application``)."""
        return self.base_dir / "bin"

    @property
    def secure(self) -> bool:
        return self.kdc is not None

    @property
    def user_principal(self) -> str:
        """The Kerberos principal of :attr:`user` (secure clusters), a member of the HDFS
        superuser group as the OS user is."""
        return self.kdc.principal(self.user)

    @property
    def user_keytab(self) -> Path:
        return self.keytabs[self.user]

    def env(self) -> Dict[str, str]:
        """Environment variables a Hadoop/Spark/tfspark client needs to use this cluster
        (``PATH`` starts with :attr:`bin_dir`). On a secure cluster every JVM is pointed at
        the KDC's krb5.conf (``JAVA_TOOL_OPTIONS``), as /etc/krb5.conf would on a real host;
        a ticket is the caller's business (``KRB5CCNAME``, :meth:`kinit`)."""
        env = {"HADOOP_CONF_DIR": str(self.conf_dir), "YARN_CONF_DIR": str(self.conf_dir),
               "JAVA_HOME": java_home(),
               "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        if self.secure:
            env.update(self.kdc.env(), JAVA_TOOL_OPTIONS=" ".join(self.kdc.java_options()))
        return env

    def kinit(self, ccache) -> Dict[str, str]:
        """Log :attr:`user_principal` in from its keytab into the ticket cache ``ccache`` and
        return the environment that uses it (``KRB5CCNAME``), as a user's ``kinit``."""
        self.kdc.kinit(self.user, self.user_keytab, Path(ccache))
        return {"KRB5CCNAME": f"FILE:{ccache}"}

    def spark_yarn_conf(self, python: str = sys.executable) -> Dict[str, str]:
        """Spark settings to run on this YARN with ``python`` on the driver, AM and executors.

        Spark's own jars are used in place (the NodeManager is on this machine), so nothing
        is zipped and uploaded per application.
        """
        import pyspark
        jars = Path(pyspark.__file__).parent / "jars"
        return {"spark.master": "yarn",
                "spark.yarn.jars": f"local:{jars}/*",
                "spark.pyspark.python": python,
                "spark.yarn.appMasterEnv.PYSPARK_PYTHON": python,
                "spark.executorEnv.PYSPARK_PYTHON": python}

    def container_logs(self, application_id: str) -> Dict[str, str]:
        """``{"<container>/<file>": text}`` of every log the NodeManager kept for
        ``application_id`` in its local log folder (how a secure test cluster, which
        aggregates no logs, shows them)."""
        app_dir = self.base_dir / "nm-logs" / application_id
        return {str(f.relative_to(app_dir)): f.read_text(errors="replace")
                for f in sorted(app_dir.glob("*/*")) if f.is_file()}

    def log_file(self, daemon: str) -> Path:
        return self.log_dir / f"{daemon}.log"

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> "HadoopCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "HadoopCluster":
        """Fetch jars if needed, write the config, format HDFS and start every daemon.

        Returns once HDFS accepts writes and (with ``yarn``) the NodeManager is RUNNING.
        """
        self.lib = ensure_jars()
        self._nio_chmod = nio_chmod_classes(self.lib) if self.yarn else None
        for attempt in (1, 2):
            try:
                self._start()
                return self
            except HadoopClusterError as e:
                self.stop()
                # a free port picked at start may have been taken meanwhile: retry once
                if attempt == 2 or "Address already in use" not in str(e):
                    raise
            except BaseException:
                self.stop()
                raise
        return self

    def _start(self) -> None:
        started = time.monotonic()
        deadline = started + self.start_timeout
        for sub in ("conf", "conf-nodemanager", "dfs", "tmp", "nm-local", "nm-logs"):
            shutil.rmtree(self.base_dir / sub, ignore_errors=True)  # fresh on every (re)try
        for sub in ("conf", "conf-nodemanager", "logs", "dfs/name", "dfs/data", "tmp",
                    "nm-local", "nm-logs"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        names = ["nn_rpc", "nn_http", "nn_https", "snn_http", "dn", "dn_http", "dn_https",
                 "dn_ipc"]
        if self.yarn:
            names += ["rm", "rm_scheduler", "rm_tracker", "rm_admin", "rm_web", "rm_web_https",
                      "nm", "nm_localizer", "nm_web"]
        self.ports = {name: _free_port() for name in names}
        if self.secure and not self.keytabs:  # once: a retried start keeps them
            self._make_principals()
        self._write_config()
        self._write_commands()

        fmt = self._launch("namenode-format",
                           ["-format", "-nonInteractive", "-force"])
        try:
            fmt.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            fmt.kill()
            fmt.wait()
        if fmt.returncode != 0:
            raise HadoopClusterError("formatting the NameNode failed; end of "
                                     f"{self.log_file('namenode-format')}:\n"
                                     f"{_file_tail(self.log_file('namenode-format'))}")
        daemons = ["namenode", "datanode"] + (["resourcemanager", "nodemanager"]
                                              if self.yarn else [])
        for daemon in daemons:
            self._procs[daemon] = self._launch(daemon)
            self.pids[daemon] = self._procs[daemon].pid
        self._write_state()

        self._wait("namenode", deadline, self._namenode_up)
        self._wait("datanode", deadline, self._datanode_live)
        self._wait("namenode", deadline, self._prepare_hdfs)
        if self.yarn:
            self._wait("resourcemanager", deadline, self._rm_up)
            self._wait("nodemanager", deadline, self._nodemanager_running)
        self.start_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Kill every daemon and its children; safe to call more than once."""
        for daemon in reversed(list(self.pids)):
            kill_tree(self.pids[daemon])
            proc = self._procs.get(daemon)
            if proc is not None:
                proc.wait()
        self.pids.clear()
        self._procs.clear()
        state = self.base_dir / STATE_FILE
        if state.exists():
            state.unlink()

    def running(self) -> Dict[str, bool]:
        return {daemon: alive(pid) for daemon, pid in self.pids.items()}

    # -- state file for the CLI ----------------------------------------------------------------

    def _write_state(self) -> None:
        state = {"yarn": self.yarn, "ports": self.ports, "pids": self.pids,
                 "user": self.user, "secure": self.secure}
        (self.base_dir / STATE_FILE).write_text(json.dumps(state, indent=1))

    @classmethod
    def from_state(cls, base_dir) -> "HadoopCluster":
        """The cluster a previous ``start`` (maybe in another process) left in ``base_dir``."""
        path = Path(base_dir) / STATE_FILE
        if not path.exists():
            raise HadoopClusterError(f"no cluster state at {path}")
        state = json.loads(path.read_text())
        cluster = cls(base_dir, yarn=state["yarn"])
        cluster.ports, cluster.pids = state["ports"], state["pids"]
        return cluster

    # -- configuration -------------------------------------------------------------------------

    def _write_config(self) -> None:
        base, p, conf = self.base_dir, self.ports, self.conf_dir
        local = "127.0.0.1"
        core_site = {
            "fs.defaultFS": self.default_fs,
            "hadoop.tmp.dir": base / "tmp",
            "hadoop.security.authentication": "simple",
            **(security.core_site(self.keytabs) if self.secure else {}),
        }
        _write_site(conf / "core-site.xml", core_site)
        if self._nio_chmod:  # the NodeManager's own core-site.xml, first on its classpath
            _write_site(self.nodemanager_conf_dir / "core-site.xml",
                        dict(core_site, **{"fs.AbstractFileSystem.file.impl": NIO_CHMOD_CLASS}))
        _write_site(conf / "hdfs-site.xml", {
            "dfs.replication": 1,
            "dfs.namenode.name.dir": f"file://{base}/dfs/name",
            "dfs.datanode.data.dir": f"file://{base}/dfs/data",
            "dfs.namenode.rpc-address": f"{local}:{p['nn_rpc']}",
            "dfs.namenode.http-address": f"{local}:{p['nn_http']}",
            "dfs.namenode.https-address": f"{local}:{p['nn_https']}",
            "dfs.namenode.secondary.http-address": f"{local}:{p['snn_http']}",
            "dfs.datanode.address": f"{local}:{p['dn']}",
            "dfs.datanode.http.address": f"{local}:{p['dn_http']}",
            "dfs.datanode.https.address": f"{local}:{p['dn_https']}",
            "dfs.datanode.ipc.address": f"{local}:{p['dn_ipc']}",
            "dfs.datanode.hostname": local,
            "dfs.namenode.datanode.registration.ip-hostname-check": "false",
            "dfs.webhdfs.enabled": "true",
            "dfs.permissions.enabled": "true",
            "dfs.permissions.superusergroup": grp.getgrgid(os.getgid()).gr_name,
            "dfs.namenode.safemode.threshold-pct": 0,
            "dfs.namenode.safemode.extension": 0,
            "dfs.heartbeat.interval": 1,
            "dfs.datanode.du.reserved": 0,
            **(security.hdfs_site(self.kdc, self.keytabs, self.token_renew_interval_s,
                                  self.token_max_lifetime_s) if self.secure else {}),
        })
        if self.yarn:
            self._write_yarn_config()
        (conf / "log4j.properties").write_text(LOG4J_PROPERTIES)
        write_webapps(conf)

    def _write_yarn_config(self) -> None:
        base, p, conf = self.base_dir, self.ports, self.conf_dir
        local = "127.0.0.1"
        _write_site(conf / "yarn-site.xml", {
            "yarn.resourcemanager.hostname": local,
            "yarn.resourcemanager.address": f"{local}:{p['rm']}",
            "yarn.resourcemanager.scheduler.address": f"{local}:{p['rm_scheduler']}",
            "yarn.resourcemanager.resource-tracker.address": f"{local}:{p['rm_tracker']}",
            "yarn.resourcemanager.admin.address": f"{local}:{p['rm_admin']}",
            "yarn.resourcemanager.webapp.address": f"{local}:{p['rm_web']}",
            "yarn.resourcemanager.webapp.https.address": f"{local}:{p['rm_web_https']}",
            "yarn.nodemanager.hostname": local,
            "yarn.nodemanager.address": f"{local}:{p['nm']}",
            "yarn.nodemanager.localizer.address": f"{local}:{p['nm_localizer']}",
            "yarn.nodemanager.webapp.address": f"{local}:{p['nm_web']}",
            "yarn.nodemanager.local-dirs": base / "nm-local",
            "yarn.nodemanager.log-dirs": base / "nm-logs",
            "yarn.nodemanager.resource.memory-mb": self.nm_memory_mb,
            "yarn.nodemanager.resource.cpu-vcores": self.nm_vcores,
            "yarn.scheduler.minimum-allocation-mb": 256,
            "yarn.scheduler.maximum-allocation-mb": self.nm_memory_mb,
            "yarn.scheduler.maximum-allocation-vcores": self.nm_vcores,
            "yarn.nodemanager.vmem-check-enabled": "false",
            "yarn.nodemanager.pmem-check-enabled": "false",
            # containers (Spark's AM and executors) start `$JAVA_HOME/bin/java`
            "yarn.nodemanager.env-whitelist": "JAVA_HOME,PATH,HADOOP_CONF_DIR,YARN_CONF_DIR,"
                                              "LANG,TZ,HADOOP_USER_NAME",
            "yarn.nodemanager.admin-env": _admin_env(),
            "yarn.nodemanager.disk-health-checker.max-disk-utilization-per-disk-percentage":
                99.9,
            # `yarn logs -applicationId ...` reads finished applications' logs from HDFS
            "yarn.log-aggregation-enable": "true",
            "yarn.nodemanager.remote-app-log-dir": "/tmp/logs",
            "yarn.resourcemanager.nodemanagers.heartbeat-interval-ms": 500,
            # a stopping NodeManager waits this long (+ ~1 s) for containers: keep stop() quick
            "yarn.nodemanager.process-kill-wait.ms": 1000,
            **(security.yarn_site(self.kdc, self.keytabs, _admin_env) if self.secure else {}),
        })
        _write_site(conf / "capacity-scheduler.xml", {
            "yarn.scheduler.capacity.root.queues": "default",
            "yarn.scheduler.capacity.root.default.capacity": 100,
            "yarn.scheduler.capacity.root.default.maximum-capacity": 100,
            "yarn.scheduler.capacity.root.default.state": "RUNNING",
            # Spark's AM alone is ~1 GB; the default 10% of the node would queue it forever
            "yarn.scheduler.capacity.maximum-am-resource-percent": 0.5,
            "yarn.scheduler.capacity.root.default.acl_submit_applications": "*",
            "yarn.scheduler.capacity.root.default.acl_administer_queue": "*",
        })

    # -- Kerberos ------------------------------------------------------------------------------

    def _make_principals(self) -> None:
        self.keytabs = security.make_principals(self.kdc, self.user)
        # the fixture's own ticket, for its readiness checks over SPNEGO and its set-up
        self._fixture_env = dict(self.kinit(self.base_dir / "tmp" / "krb5cc_fixture"),
                                 **self.kdc.env())

    def _http_json(self, url: str) -> dict:
        """GET ``url`` as JSON; on a secure cluster with SPNEGO (curl --negotiate, the
        fixture's ticket), as every web endpoint there demands Kerberos."""
        if not self.secure:
            return _get_json(url)
        done = subprocess.run(["curl", "-sS", "--fail", "--max-time", "5", "--negotiate",
                               "-u", ":", "-H", "Accept: application/json", url],
                              env=dict(os.environ, **self._fixture_env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=30)
        if done.returncode != 0:
            raise OSError(f"curl --negotiate {url}: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def _write_commands(self) -> None:
        """``bin/hdfs`` and ``bin/yarn``: the Hadoop client commands that the docs'
        instructions use, run from the cluster's own jars."""
        java = Path(java_home()) / "bin" / "java"
        run = (f'exec "{java}" -Xmx256m {" ".join(JAVA_17_OPENS)} '
               f'-cp "{self.conf_dir}:{self.lib}/*" "$main" "$@"')
        commands = {  # subcommand -> main class, as Hadoop's own scripts map them
            "hdfs": {"dfs": ("org.apache.hadoop.fs.FsShell", True)},
            "yarn": {"logs": ("org.apache.hadoop.yarn.client.cli.LogsCLI", True),
                     "application": ("org.apache.hadoop.yarn.client.cli.ApplicationCLI",
                                     False),
                     "rmadmin": ("org.apache.hadoop.yarn.client.cli.RMAdminCLI", True)},
        }
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        for name, subcommands in commands.items():
            cases = "".join(f'  {sub}) {"shift; " if drop else ""}main={main} ;;\n'
                            for sub, (main, drop) in subcommands.items())
            only = ", ".join(f"{name} {sub}" for sub in subcommands)
            path = self.bin_dir / name
            path.write_text(
                f"#!/usr/bin/env bash\n# {name} for the tfspark test cluster in {self.base_dir}"
                f"\ncase \"$1\" in\n{cases}  *) echo \"this test cluster has only: {only}\" >&2;"
                f" exit 2 ;;\nesac\n{run}\n")
            path.chmod(0o755)

    # -- processes -----------------------------------------------------------------------------

    def _launch(self, name: str, args=()) -> subprocess.Popen:
        env = dict(os.environ, **self.env())
        env.pop("HADOOP_USER_NAME", None)  # every daemon runs as the OS user (the superuser)
        extra = {}
        if name == "nodemanager" and self._nio_chmod:
            extra = dict(classpath_first=[self.nodemanager_conf_dir],
                         classpath_last=[self._nio_chmod])
        cmd = daemon_command(name, self.conf_dir, self.lib, self.log_dir, self.daemon_heap,
                             args, **extra)
        with open(self.log_file(name), "ab") as log:
            # SIGTERM when this process dies (not for the CLI's `start`: see die_with_parent)
            return spawn(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         env=env, cwd=self.base_dir, start_new_session=True,
                         die_with_parent_signal=signal.SIGTERM if self.die_with_parent else None)

    def _wait(self, daemon: str, deadline: float, ready: Callable[[], bool]) -> None:
        """Poll ``ready`` until true; fail early if the daemon exits or the deadline passes."""
        last_error = None
        while True:
            proc = self._procs[daemon]
            if proc.poll() is not None:
                raise HadoopClusterError(
                    f"{daemon} exited with status {proc.returncode} while starting; end of "
                    f"{self.log_file(daemon)}:\n{_file_tail(self.log_file(daemon))}")
            try:
                if ready():
                    return
            except (OSError, ValueError, KeyError) as e:
                last_error = e
            if time.monotonic() > deadline:
                raise HadoopClusterError(
                    f"{daemon} was not ready after {self.start_timeout:.0f}s (last check: "
                    f"{last_error!r}); end of {self.log_file(daemon)}:\n"
                    f"{_file_tail(self.log_file(daemon))}")
            time.sleep(0.5)

    def _webhdfs(self, path: str, op: str, method: str = "GET", **params) -> dict:
        query = "&".join(f"{k}={v}" for k, v in dict(op=op, **{"user.name": self.user},
                                                      **params).items())
        req = urllib.request.Request(f"{self.webhdfs_url}/webhdfs/v1{path}?{query}",
                                     method=method)
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read().decode() or "{}")

    def _namenode_up(self) -> bool:
        if self.secure:
            return bool(self._http_json(f"{self.webhdfs_url}/jmx?qry=Hadoop:service=NameNode,"
                                        "name=NameNodeInfo")["beans"])
        return "FileStatus" in self._webhdfs("/", "GETFILESTATUS")

    def _datanode_live(self) -> bool:
        return hdfs_takes_writes(self.webhdfs_url, self._http_json)

    def _prepare_hdfs(self) -> bool:
        """World-writable /tmp, a home for the current user, and a probe write."""
        if self.secure:
            self._prepare_secure_hdfs()
            return True
        self._webhdfs("/tmp", "MKDIRS", "PUT", permission="1777")
        self._webhdfs("/tmp", "SETPERMISSION", "PUT", permission="1777")
        self._webhdfs(f"/user/{self.user}", "MKDIRS", "PUT")
        # creating a file proves the DataNode accepts blocks (two-step WebHDFS create)
        url = (f"{self.webhdfs_url}/webhdfs/v1/tmp/.probe?op=CREATE&overwrite=true"
               f"&user.name={self.user}&noredirect=true")
        with urllib.request.urlopen(urllib.request.Request(url, method="PUT"),
                                    timeout=10) as resp:
            location = json.loads(resp.read().decode())["Location"]
        data_req = urllib.request.Request(location, data=b"ok", method="PUT")
        urllib.request.urlopen(data_req, timeout=30).close()
        self._webhdfs("/tmp/.probe", "DELETE", "DELETE")
        return True

    def _prepare_secure_hdfs(self) -> None:
        """:meth:`_prepare_hdfs` as the user principal, through Hadoop's own shell (RPC with
        a Kerberos ticket), so no Python Kerberos client is needed."""
        env = {**os.environ, **self.env(), **self._fixture_env}
        probe = self.base_dir / "tmp" / "probe"
        probe.write_bytes(b"ok")
        home = f"/user/{self.user}"
        for args in (["-mkdir", "-p", "/tmp", home], ["-chmod", "1777", "/tmp"],
                     ["-put", "-f", str(probe), "/tmp/.probe"], ["-rm", "-skipTrash",
                                                                  "/tmp/.probe"]):
            done = subprocess.run([str(self.bin_dir / "hdfs"), "dfs", *args], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=120)
            if done.returncode != 0:
                raise HadoopClusterError(f"hdfs dfs {' '.join(args)} failed on the secure "
                                         f"cluster:\n{_tail(done.stdout)}")

    def set_node_resource(self, memory_mb: int, vcores: int) -> None:
        """Change what the NodeManager offers, at once (``yarn rmadmin -updateNodeResource``):
        e.g. below what runs on it, so that YARN grants no replacement for a container killed
        -- as if its machine were gone. :meth:`restore_node_resource` undoes it."""
        done = subprocess.run(
            [str(self.bin_dir / "yarn"), "rmadmin", "-updateNodeResource",
             self._running_node()["id"], str(memory_mb), str(vcores)],
            env=dict(os.environ, **self.env()), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise HadoopClusterError(f"yarn rmadmin -updateNodeResource failed: "
                                     f"{_tail(done.stderr)}")

    def node_usage(self) -> Tuple[int, int]:
        """(memory MB, vcores) that the NodeManager's containers use now."""
        node = self._running_node()
        return int(node["usedMemoryMB"]), int(node["usedVirtualCores"])

    def _running_node(self) -> dict:
        """The RUNNING NodeManager, as the ResourceManager reports it (its ``id``: NodeID)."""
        nodes = self._http_json(f"{self.rm_web_url}/ws/v1/cluster/nodes")["nodes"]["node"]
        return next(n for n in nodes if n.get("state") == "RUNNING")

    def restore_node_resource(self) -> None:
        self.set_node_resource(self.nm_memory_mb, self.nm_vcores)

    def _rm_up(self) -> bool:
        return self._http_json(f"{self.rm_web_url}/ws/v1/cluster/info")["clusterInfo"]["state"] \
            == "STARTED"

    def _nodemanager_running(self) -> bool:
        nodes = (self._http_json(f"{self.rm_web_url}/ws/v1/cluster/nodes").get("nodes") or {})
        return any(n.get("state") == "RUNNING" for n in nodes.get("node", []))


# ---------------------------------------------------------------------------------------------
# command line


def _exports(cluster: HadoopCluster) -> str:
    lines = [f"export {k}={v}" for k, v in cluster.env().items()]
    lines.append(f"# fs.defaultFS={cluster.default_fs} webhdfs={cluster.webhdfs_url}")
    if cluster.yarn:
        lines.append(f"# resourcemanager={cluster.rm_address} web={cluster.rm_web_url}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfspark.testing.hadoop",
                                     description="single-node HDFS + YARN for tests")
    parser.add_argument("command", choices=["start", "stop", "status", "fetch"])
    parser.add_argument("--dir", default="/tmp/tfspark-hadoop",
                        help="base folder for config, logs and data (default %(default)s)")
    parser.add_argument("--no-yarn", action="store_true", help="start HDFS only")
    args = parser.parse_args(argv)

    if args.command == "fetch":
        print(ensure_jars())
        return 0
    if args.command == "start":
        if (Path(args.dir) / STATE_FILE).exists():
            print(f"a cluster is already recorded in {args.dir}; stop it first",
                  file=sys.stderr)
            return 1
        try:
            cluster = HadoopCluster(args.dir, yarn=not args.no_yarn,
                                    die_with_parent=False).start()
        except HadoopClusterError as e:
            print(e, file=sys.stderr)
            return 1
        print(f"# started in {cluster.start_seconds:.1f}s; logs in {cluster.log_dir}",
              file=sys.stderr)
        print(_exports(cluster))
        return 0
    try:
        cluster = HadoopCluster.from_state(args.dir)
    except HadoopClusterError as e:
        print(e, file=sys.stderr)
        return 0 if args.command == "stop" else 1
    if args.command == "stop":
        cluster.stop()
        return 0
    alive = cluster.running()
    for daemon, up in alive.items():
        print(f"{daemon}: {'running' if up else 'DEAD'} (pid {cluster.pids[daemon]})")
    print(_exports(cluster))
    return 0 if all(alive.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
