"""What makes :class:`tfspark.testing.hadoop.HadoopCluster` a Kerberized cluster: its service
principals and keytabs in a :class:`~tfspark.testing.kdc.KDC`, and the core/HDFS/YARN settings
that make every daemon log in from a keytab and every client show Kerberos or a delegation
token (as Hadoop's own secure mini clusters are set up, without root)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Optional

if TYPE_CHECKING:
    from tfspark.testing.kdc import KDC

#: service principals: one per service, as Hadoop's own secure mini clusters do; named with
#: ``localhost`` (no ``_HOST``), so clients need no reverse DNS of 127.0.0.1
SERVICE_PRINCIPALS = {"hdfs": "hdfs/localhost", "http": "HTTP/localhost", "yarn": "yarn/localhost"}


def make_principals(kdc: "KDC", user: str) -> Dict[str, Path]:
    """The services' principals and ``user``'s, each with a keytab: {"hdfs"|"http"|"yarn"|user:
    keytab}."""
    keytabs = {key: kdc.add_principal(name) for key, name in SERVICE_PRINCIPALS.items()}
    # SPNEGO clients ask for HTTP/<the host in the URL>: the web servers take either
    kdc.add_principal("HTTP/127.0.0.1", keytabs["http"])
    keytabs[user] = kdc.add_principal(user)
    return keytabs


def core_site(keytabs: Dict[str, Path]) -> Dict[str, object]:
    return {
        "hadoop.security.authentication": "kerberos",
        "hadoop.security.authorization": "true",
        "hadoop.rpc.protection": "authentication",
        # principal -> user: the realm is krb5.conf's default, so DEFAULT maps
        # hdfs/localhost@REALM to hdfs and alice@REALM to alice
        "hadoop.security.auth_to_local": "DEFAULT",
        # every web endpoint (WebHDFS, JMX, the YARN REST APIs) wants SPNEGO or a
        # delegation token: no ?user.name=, no anonymous requests
        "hadoop.http.authentication.type": "kerberos",
        "hadoop.http.authentication.simple.anonymous.allowed": "false",
        "hadoop.http.authentication.kerberos.principal": "*",
        "hadoop.http.authentication.kerberos.keytab": keytabs["http"],
    }


def hdfs_site(kdc: "KDC", keytabs: Dict[str, Path], token_renew_interval_s: Optional[float],
              token_max_lifetime_s: Optional[float]) -> Dict[str, object]:
    """Block access tokens on, the daemons' principals, and (to test renewal) short-lived
    delegation tokens."""
    hdfs, http = (kdc.principal(SERVICE_PRINCIPALS[k]) for k in ("hdfs", "http"))
    settings: Dict[str, object] = {
        "dfs.block.access.token.enable": "true",
        "dfs.namenode.kerberos.principal": hdfs,
        "dfs.namenode.keytab.file": keytabs["hdfs"],
        "dfs.datanode.kerberos.principal": hdfs,
        "dfs.datanode.keytab.file": keytabs["hdfs"],
        "dfs.web.authentication.kerberos.principal": http,
        "dfs.web.authentication.kerberos.keytab": keytabs["http"],
        "dfs.namenode.kerberos.internal.spnego.principal": http,
        # a DataNode on unprivileged ports without SASL, as Hadoop's own tests run it
        "ignore.secure.ports.for.testing": "true",
    }
    if token_renew_interval_s:
        settings["dfs.namenode.delegation.token.renew-interval"] = \
            int(token_renew_interval_s * 1000)
    if token_max_lifetime_s:
        settings["dfs.namenode.delegation.token.max-lifetime"] = int(token_max_lifetime_s * 1000)
    return settings


def yarn_site(kdc: "KDC", keytabs: Dict[str, Path], admin_env: Callable[[str], str]
              ) -> Dict[str, object]:
    """The ResourceManager's and NodeManager's principals; containers under the
    DefaultContainerExecutor, each JVM told where krb5.conf is (``admin_env(extra)``: the
    NodeManager's admin environment with ``extra`` added)."""
    yarn = kdc.principal(SERVICE_PRINCIPALS["yarn"])
    http = kdc.principal(SERVICE_PRINCIPALS["http"])
    return {
        "yarn.resourcemanager.webapp.spnego-principal": http,
        "yarn.resourcemanager.webapp.spnego-keytab-file": keytabs["http"],
        "yarn.nodemanager.webapp.spnego-principal": http,
        "yarn.nodemanager.webapp.spnego-keytab-file": keytabs["http"],
        "yarn.resourcemanager.principal": yarn,
        "yarn.resourcemanager.keytab": keytabs["yarn"],
        "yarn.nodemanager.principal": yarn,
        "yarn.nodemanager.keytab": keytabs["yarn"],
        # containers run as the NodeManager's OS user (no setuid container-executor)
        "yarn.nodemanager.container-executor.class":
            "org.apache.hadoop.yarn.server.nodemanager.DefaultContainerExecutor",
        # every container's JVM finds the realm, as /etc/krb5.conf would on a real host
        "yarn.nodemanager.admin-env": admin_env(
            f"JAVA_TOOL_OPTIONS={' '.join(kdc.java_options())}"),
        # aggregating logs reads them through SecureIOUtils, which under Kerberos needs
        # libhadoop.so (not on Maven Central) and kills the NodeManager without it; the
        # containers' logs stay in nm-logs/ (HadoopCluster.container_logs)
        "yarn.log-aggregation-enable": "false",
        "yarn.nodemanager.delete.debug-delay-sec": 600,
    }
