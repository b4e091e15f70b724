"""A real Kerberos KDC for tests: MIT Kerberos's ``krb5kdc``, run as the current user.

Why MIT and not Hadoop's MiniKdc: it is the KDC (and the ``kinit``/``klist`` tools) that
production Hadoop clusters and their users actually have, a user's ``kinit`` writes the same
ticket cache format the JVM then reads, and it starts in milliseconds. It needs Debian's
``krb5-kdc``, ``krb5-admin-server`` and ``krb5-user`` (``make kdc-tools`` installs them).

Everything lives under ``base_dir``: ``krb5.conf`` (point clients at it with :meth:`KDC.env`,
and JVMs with :meth:`KDC.java_options`), the database, ``keytabs/`` and the KDC's log. The
KDC listens on 127.0.0.1 only, on a free port, TCP (``udp_preference_limit = 1``).

    with KDC("/tmp/kdc") as kdc:
        keytab = kdc.add_principal("alice")           # alice@TFSPARK.TEST, keytab returned
        kdc.kinit("alice", keytab, ccache="/tmp/cc")   # a ticket cache, as a user's kinit
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

from tfspark.testing._process import spawn

REALM = "TFSPARK.TEST"
# the encryption types every JVM since 8 and MIT Kerberos agree on without extra settings
ENCTYPES = "aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96"
TOOLS = {"krb5kdc": "krb5-kdc", "kdb5_util": "krb5-kdc", "kadmin.local": "krb5-kdc",
         "kinit": "krb5-user", "kdestroy": "krb5-user"}


class KDCError(RuntimeError):
    """The test KDC could not be set up or started, or a Kerberos tool failed."""


def _tool(name: str) -> str:
    path = shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name,)
                                       if p.exists()), None)
    if not path:
        raise KDCError(f"`{name}` is missing: install Debian's {TOOLS[name]} "
                       "(`make kdc-tools` does it as root)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KDC:
    """One realm on 127.0.0.1 with principals and keytabs made on demand.

    ``ticket_lifetime`` bounds every ticket (a short one lets tests see expiry)."""

    def __init__(self, base_dir, realm: str = REALM, ticket_lifetime: str = "10h",
                 start_timeout: float = 30.0):
        self.base_dir = Path(base_dir).resolve()
        self.realm = realm
        self.ticket_lifetime = ticket_lifetime
        self.start_timeout = start_timeout
        self.port: Optional[int] = None
        self._proc: Optional[subprocess.Popen] = None

    # -- paths and settings for clients ----------------------------------------------------------

    @property
    def krb5_conf(self) -> Path:
        return self.base_dir / "krb5.conf"

    @property
    def keytab_dir(self) -> Path:
        return self.base_dir / "keytabs"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "kdc.log"

    def principal(self, name: str) -> str:
        """``name`` with this realm (``hdfs/localhost`` -> ``hdfs/localhost@TFSPARK.TEST``)."""
        return name if "@" in name else f"{name}@{self.realm}"

    def env(self) -> Dict[str, str]:
        """What MIT tools (``kinit``, ``klist``) need to find this realm."""
        return {"KRB5_CONFIG": str(self.krb5_conf)}

    def java_options(self) -> List[str]:
        """What a JVM needs to find this realm (Java reads no KRB5_CONFIG)."""
        return [f"-Djava.security.krb5.conf={self.krb5_conf}"]

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> "KDC":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "KDC":
        shutil.rmtree(self.base_dir, ignore_errors=True)
        self.keytab_dir.mkdir(parents=True, mode=0o700)
        self.base_dir.chmod(0o700)
        self.port = _free_port()
        self._write_config()
        env = self._kdc_env()
        # the master key only protects this throwaway database; it is stashed, never typed
        done = subprocess.run([_tool("kdb5_util"), "create", "-s", "-r", self.realm, "-P",
                               secrets.token_hex(16)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=60)
        if done.returncode != 0:
            raise KDCError(f"kdb5_util create failed: {done.stdout.strip()}")
        with open(self.base_dir / "krb5kdc.out", "ab") as out:
            self._proc = spawn([_tool("krb5kdc"), "-n", "-r", self.realm], env=env,
                               stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                               die_with_parent_signal=signal.SIGTERM)
        self._wait_until_listening()
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    # -- principals and tickets ------------------------------------------------------------------

    def add_principal(self, name: str, keytab: Optional[Path] = None) -> Path:
        """Create ``name`` with a random key and export it to ``keytab`` (default
        ``keytabs/<name with / as _>.keytab``, mode 0600); returns the keytab's path."""
        keytab = Path(keytab or self.keytab_dir / (name.replace("/", "_") + ".keytab"))
        # (an existing keytab gets the new key added)
        self.kadmin(f"addprinc -randkey {self.principal(name)}",
                    f"ktadd -k {keytab} {self.principal(name)}")
        keytab.chmod(0o600)
        return keytab

    def kadmin(self, *queries: str) -> str:
        """Run ``kadmin.local`` queries against this realm's database; fails on any error."""
        done = subprocess.run([_tool("kadmin.local"), "-r", self.realm],
                              input="".join(q + "\n" for q in queries), env=self._kdc_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=60)
        problems = [line for line in done.stdout.splitlines()
                    if "error" in line.lower() or "while " in line or "failed" in line.lower()]
        if done.returncode != 0 or problems:
            raise KDCError(f"kadmin.local {queries}: " + "; ".join(problems or [done.stdout]))
        return done.stdout

    def kinit(self, name: str, keytab: Path, ccache: Path) -> None:
        """Log ``name`` in from ``keytab`` into the ticket cache file ``ccache``, as a user's
        ``kinit -kt`` would."""
        done = subprocess.run([_tool("kinit"), "-kt", str(keytab), "-c", f"FILE:{ccache}",
                               self.principal(name)], env=dict(os.environ, **self.env()),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=60)
        if done.returncode != 0:
            raise KDCError(f"kinit {self.principal(name)} failed: {done.stdout.strip()}")

    # -- internals -------------------------------------------------------------------------------

    def _kdc_env(self) -> Dict[str, str]:
        return dict(os.environ, KRB5_CONFIG=str(self.krb5_conf),
                    KRB5_KDC_PROFILE=str(self.base_dir / "kdc.conf"))

    def _write_config(self) -> None:
        base, realm, port = self.base_dir, self.realm, self.port
        (base / "kdc.conf").write_text(
            f"[kdcdefaults]\n kdc_ports = {port}\n kdc_tcp_ports = {port}\n"
            f"[realms]\n {realm} = {{\n  database_name = {base}/principal\n"
            f"  key_stash_file = {base}/stash\n  acl_file = {base}/kadm5.acl\n"
            f"  max_life = {self.ticket_lifetime}\n  max_renewable_life = 7d\n"
            f"  supported_enctypes = {' '.join(e + ':normal' for e in ENCTYPES.split())}\n"
            f" }}\n[logging]\n kdc = FILE:{self.log_file}\n")
        (base / "kadm5.acl").write_text("")
        self.krb5_conf.write_text(
            f"[libdefaults]\n default_realm = {realm}\n dns_lookup_realm = false\n"
            f" dns_lookup_kdc = false\n rdns = false\n dns_canonicalize_hostname = false\n"
            f" udp_preference_limit = 1\n ticket_lifetime = {self.ticket_lifetime}\n"
            f" forwardable = true\n default_tkt_enctypes = {ENCTYPES}\n"
            f" default_tgs_enctypes = {ENCTYPES}\n permitted_enctypes = {ENCTYPES}\n"
            f"[realms]\n {realm} = {{\n  kdc = 127.0.0.1:{port}\n }}\n"
            f"[domain_realm]\n localhost = {realm}\n 127.0.0.1 = {realm}\n")
        self.krb5_conf.chmod(0o644)  # clients of every user read it

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
                raise KDCError(f"krb5kdc exited with status {self._proc.returncode}: "
                               f"{log[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise KDCError(f"krb5kdc is not listening on 127.0.0.1:{self.port} after "
                                   f"{self.start_timeout:.0f}s; see {self.log_file}")
                time.sleep(0.05)
