"""HDFS delegation tokens from the driver's JVM: the Kerberos login Spark already has.

A driver has a JVM that logged in the way the user set up Spark: a ``kinit`` ticket cache, or
``--principal/--keytab``. Through it (Py4J; no Python Kerberos library) this module gives
:mod:`tfspark.fs.credentials` a token for a NameNode:

* the one Spark keeps in the current user's credentials (on YARN Spark obtained it for the
  application; with a keytab Spark re-obtains it before it expires), read again on every use
  so a re-issued token is picked up;
* otherwise one of its own, obtained with the JVM's ticket or keytab (standalone, local, a
  driver without a SparkContext yet), renewed before each renew interval ends and obtained
  again before its max lifetime, and cancelled when the process exits.

The JVM is the active SparkContext's; with none (``tfspark.pack --upload``, a Spark Connect
client, a script before its session) one private gateway is launched once.
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Any, Dict, Optional, Tuple

from tfspark.fs.credentials import missing_credentials, set_provider
from tfspark.fs.tokens import HDFS_DELEGATION_KIND, Token, decode_identifier

logger = logging.getLogger(__name__)

#: renew an own token when this fraction of its current life has passed (Spark uses 0.75
#: of the interval for re-obtaining; renewing earlier leaves room for one failed attempt)
RENEW_AT = 0.5
#: obtain a new own token when less than this fraction of its max lifetime is left
REISSUE_AT = 0.2

#: how often the renewer thread looks whether an own token is due
RENEW_CHECK_SECS = 5.0

#: how long an answer is given again without asking the JVM: each answer is several Py4J
#: calls, and WebHDFS asks before every request (a glob, a walk: hundreds a second)
ANSWER_SECS = 1.0

_gateway: Any = None
_gateway_lock = threading.Lock()


def _jvm_and_conf():
    """(JVM view, Hadoop Configuration) of the active SparkContext, else of a private gateway."""
    global _gateway
    pyspark = sys.modules.get("pyspark")
    sc = getattr(getattr(pyspark, "SparkContext", None), "_active_spark_context", None)
    if sc is not None and getattr(sc, "_jsc", None) is not None:
        return sc._jvm, sc._jsc.hadoopConfiguration()
    with _gateway_lock:
        if _gateway is None:
            from pyspark import SparkConf
            from pyspark.java_gateway import launch_gateway
            quiet = SparkConf(loadDefaults=False).set(
                "spark.driver.extraJavaOptions",
                f"-Dlog4j2.configurationFile=file:{_quiet_log4j()}")
            _gateway = launch_gateway(quiet)
            logger.info("tfspark: started a JVM for HDFS Kerberos credentials")
        jvm = _gateway.jvm
        return jvm, jvm.org.apache.hadoop.conf.Configuration()


_QUIET_LOG4J = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""


def _quiet_log4j() -> str:
    """A log4j2 configuration for the private JVM: its errors only (not Spark's start-up
    lines, which would read as if a Spark application had started)."""
    folder = tempfile.mkdtemp(prefix="tfspark-jvm-")
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, "log4j2.properties")
    with open(path, "w") as out:
        out.write(_QUIET_LOG4J)
    return path


class OwnToken:
    """A token this process obtained and renews (the JVM object and what we know of it)."""

    def __init__(self, jtoken: Any, token: Token, expires_ms: int):
        self.jtoken, self.token, self.expires_ms = jtoken, token, expires_ms
        self.renewed_ms = _now_ms()
        info = decode_identifier(token)
        self.max_ms = info.max_date if info else expires_ms

    def due_for_renewal(self, now_ms: int) -> bool:
        return now_ms >= self.renewed_ms + (self.expires_ms - self.renewed_ms) * RENEW_AT

    def due_for_reissue(self, now_ms: int) -> bool:
        issued = self.max_ms - self.lifetime_ms
        return now_ms >= issued + self.lifetime_ms * (1 - REISSUE_AT)

    @property
    def lifetime_ms(self) -> int:
        info = decode_identifier(self.token)
        return max(1, self.max_ms - (info.issue_date if info else self.renewed_ms))


def _now_ms() -> int:
    return int(time.time() * 1000)


class JvmTokens:
    """The provider registered with :func:`tfspark.fs.credentials.set_provider` on a driver."""

    def __init__(self):
        self._own: Dict[str, OwnToken] = {}
        self._answers: Dict[str, Tuple[float, Optional[Token]]] = {}
        self._lock = threading.Lock()
        self._renewer: Optional[threading.Thread] = None

    def __call__(self, authority: str) -> Optional[Token]:
        now = time.monotonic()
        answered = self._answers.get(authority)
        if answered is not None and now - answered[0] < ANSWER_SECS:
            return answered[1]
        token = self._current(authority)
        self._answers[authority] = (now, token)
        return token

    def _current(self, authority: str) -> Optional[Token]:
        """Spark's token for ``authority``, else this process's own (renewed or obtained
        again when due)."""
        jvm, conf = _jvm_and_conf()
        hadoop = jvm.org.apache.hadoop
        if not hadoop.security.UserGroupInformation.isSecurityEnabled():
            hadoop.security.UserGroupInformation.setConfiguration(conf)
        fs = hadoop.fs.FileSystem.get(jvm.java.net.URI(f"hdfs://{authority}"), conf)
        spark_token = self._from_current_user(jvm, fs.getCanonicalServiceName())
        if spark_token is not None:
            return spark_token
        with self._lock:
            own = self._own.get(authority)
            now = _now_ms()
            if own is not None and not own.due_for_reissue(now) and now < own.expires_ms:
                self._renew_if_due(own, conf, now)
                return own.token
            own = self._obtain(jvm, fs, conf, authority)
            self._own[authority] = own
            self._keep_renewing()
            return own.token

    @staticmethod
    def _from_current_user(jvm: Any, service: str) -> Optional[Token]:
        """The HDFS token for ``service`` in the JVM user's credentials (Spark's), if any."""
        ugi = jvm.org.apache.hadoop.security.UserGroupInformation.getCurrentUser()
        for jtoken in ugi.getCredentials().getAllTokens().toArray():
            if (jtoken.getKind().toString() == HDFS_DELEGATION_KIND
                    and jtoken.getService().toString() == service):
                return Token.from_url_string(jtoken.encodeToUrlString())
        return None

    def _obtain(self, jvm: Any, fs: Any, conf: Any, authority: str) -> OwnToken:
        ugi = jvm.org.apache.hadoop.security.UserGroupInformation.getCurrentUser()
        if not ugi.hasKerberosCredentials():
            raise missing_credentials(authority, [f"hdfs://{authority}"])
        ugi.checkTGTAndReloginFromKeytab()
        jtoken = fs.getDelegationToken(ugi.getShortUserName())  # we renew it ourselves
        if jtoken is None:
            raise missing_credentials(authority, [f"hdfs://{authority}"])
        token = Token.from_url_string(jtoken.encodeToUrlString())
        own = OwnToken(jtoken, token, int(jtoken.renew(conf)))
        _cancel_at_exit(jtoken, conf)
        logger.info("tfspark: obtained %s", token)
        return own

    @staticmethod
    def _renew_if_due(own: OwnToken, conf: Any, now_ms: int) -> None:
        if own.due_for_renewal(now_ms):
            own.expires_ms, own.renewed_ms = int(own.jtoken.renew(conf)), now_ms

    def refresh(self) -> None:
        """Renew (or re-obtain) every own token that is due."""
        for authority in list(self._own):
            self._current(authority)

    def _keep_renewing(self) -> None:
        """A daemon thread that renews this process's own tokens when due, for as long as it
        lives: tasks and nodes were handed them and cannot renew them themselves."""
        if self._renewer is not None:
            return

        def renew() -> None:
            while True:
                time.sleep(RENEW_CHECK_SECS)
                try:
                    self.refresh()
                except Exception as e:  # noqa: BLE001 - tried again at the next check
                    logger.warning("tfspark: could not renew an HDFS delegation token: %s", e)

        self._renewer = threading.Thread(target=renew, name="tfspark-token-renewer",
                                         daemon=True)
        self._renewer.start()


def _cancel_at_exit(jtoken: Any, conf: Any) -> None:
    def cancel() -> None:
        try:
            jtoken.cancel(conf)
        except Exception:  # noqa: BLE001 - the JVM may be gone first; the token just expires
            pass
    atexit.register(cancel)


_installed: Optional[JvmTokens] = None


def install() -> JvmTokens:
    """Register the driver's JVM as this process's token provider (once)."""
    global _installed
    if _installed is None:
        _installed = JvmTokens()
        set_provider(_installed)
    return _installed
