"""Who tfspark's WebHDFS client is on a Kerberized HDFS: the HDFS delegation token it sends.

Python here has no Kerberos (``gssapi`` builds from source against libkrb5, and YARN containers
hold no ticket anyway); what every process can have is a delegation token, which WebHDFS takes
as ``?delegation=``. Where it comes from, first found wins:

1. ``$TFSPARK_TOKEN_FILE``: a TF node's own token file, which its Spark task keeps current with
   the tokens the driver hands it over the control channel (Spark standalone has no others;
   on YARN these follow the driver's renewals and re-issues, the container's file does not);
2. tokens its driver handed a Spark task (:class:`HandedTokens`: ``tfrecord.write``,
   ``tfspark.predict`` on executors that have none);
3. a provider registered in this process: on the driver, the JVM that Spark logged in
   (:mod:`tfspark.fs.jvm_tokens`: its tokens, or one it obtains with its ticket or keytab);
4. ``$HADOOP_TOKEN_FILE_LOCATION``: the tokens YARN wrote for the container (either format);
5. SPNEGO with the process's own ticket, only if the optional ``requests-kerberos`` is there.

Token files are re-read when they change, so a refreshed token is used on the next request.
No token, identifier or password ever reaches a log, an error or a repr.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import sys
import threading
from typing import Callable, Iterator, List, Optional, Tuple

from tfspark.fs.errors import error, redact
from tfspark.fs.tokens import (HDFS_DELEGATION_KIND, TOKEN_FILE_ENV, Token, decode_identifier,
                               read_token_file)

#: The token file of a TF node, kept by its task (see :mod:`tfspark._node.task`).
NODE_TOKEN_FILE_ENV = "TFSPARK_TOKEN_FILE"
_WEBHDFS_KINDS = (HDFS_DELEGATION_KIND, "WEBHDFS delegation")

#: ``provider(authority) -> Token or None``: a process-wide source (the driver's JVM)
Provider = Callable[[str], Optional[Token]]
_provider: Optional[Provider] = None
_files: dict = {}  # path -> ((inode, mtime_ns, size), tokens)
_files_lock = threading.Lock()


def set_provider(provider: Optional[Provider]) -> None:
    """Make ``provider`` this process's source of HDFS tokens (after the node's token file)."""
    global _provider
    _provider = provider


class HandedTokens:
    """Tokens a driver hands its Spark tasks in their closure (``tfrecord.write``,
    ``tfspark.predict``): the executors of Spark standalone have none of their own, and those
    of YARN hold a snapshot the task cannot renew. With a ``desk`` (the driver's
    :class:`TokenDesk`) the task asks the driver for the current ones every
    :data:`REFRESH_SECS` while it runs, so re-issued tokens reach long tasks too. The URL
    strings and the desk's key never show in a repr; :meth:`used` makes them the task's."""

    def __init__(self, url_strings: List[str], authorities: List[str] = (),
                 desk: Optional[Tuple[Tuple[str, int], bytes]] = None):
        self._url_strings = tuple(url_strings)
        self._authorities = tuple(authorities)
        self._desk = desk

    def __repr__(self) -> str:
        return f"HandedTokens({len(self._url_strings)})"

    def __bool__(self) -> bool:
        return bool(self._url_strings)

    @contextlib.contextmanager
    def used(self) -> Iterator[None]:
        """While inside, this process's requests use these tokens (after a node's own). Without
        a desk, not for NameNodes the container's own token file has one for: on YARN the
        ResourceManager renews those of the application, while a snapshot nobody renews."""
        global _handed
        if not self._url_strings:  # HDFS is not Kerberized (or not used)
            yield
            return
        handed = [Token.from_url_string(s) for s in self._url_strings]
        if self._desk is None:
            container = [t for path in _token_files(TOKEN_FILE_ENV) for t in _tokens_in(path)]
            held = {t.service for t in container if t.kind in _WEBHDFS_KINDS}
            handed = [t for t in handed if t.service not in held]
        previous, _handed = _handed, handed
        stop = threading.Event()
        refresher = None
        if self._desk is not None:  # current ones now (a queued task's snapshot may be old)
            _handed = self._fetch() or handed
            refresher = threading.Thread(target=self._refresh, args=(stop,), daemon=True,
                                         name="tfspark-token-refresh")
            refresher.start()
        try:
            yield
        finally:
            stop.set()
            if refresher is not None:
                refresher.join(timeout=1)
            _handed = previous

    def _refresh(self, stop: threading.Event) -> None:
        global _handed
        while not stop.wait(REFRESH_SECS):
            tokens = self._fetch()
            if tokens and not stop.is_set():
                _handed = tokens

    def _fetch(self) -> List[Token]:
        """The driver's current tokens for this task's NameNodes ([] if it cannot say)."""
        from tfspark.control import ChannelError, connect_authenticated
        address, secret = self._desk
        try:
            connection = connect_authenticated(address, secret, timeout=10.0)
            try:
                connection.settimeout(30.0)
                connection.send({"authorities": list(self._authorities)})
                return [Token.from_url_string(s) for s in connection.recv()["tokens"]]
            finally:
                connection.close()
        except (ChannelError, OSError) as e:  # the snapshot stays; tried again later
            logger.warning("tfspark: could not ask the driver for current HDFS tokens: %s", e)
            return []


#: What a task gets where HDFS is not Kerberized.
NO_TOKENS = HandedTokens([])

#: how often a task holding handed tokens asks its driver for the current ones
REFRESH_SECS = 5.0


class TokenDesk:
    """Driver side: answers tasks asking for the current tokens of some NameNodes, over an
    authenticated channel (:mod:`tfspark.control`); one per driver process."""

    def __init__(self, bind: str, host: str):
        from tfspark.control import ControlServer, new_secret
        self.secret = new_secret()
        self.server = ControlServer(self.secret, self._on_message, host=bind).start()
        self.address = (host, self.server.address[1])

    def __repr__(self) -> str:
        return f"TokenDesk({self.address})"

    def _on_message(self, connection, message: dict) -> None:
        tokens = [own_token(a) for a in message.get("authorities", [])]
        connection.send({"tokens": [t.url_string() for t in tokens if t is not None]})


_desk: Optional[TokenDesk] = None
_desk_lock = threading.Lock()


def token_desk(hosts: Tuple[str, str]) -> TokenDesk:
    """This driver's desk, started on first use on ``hosts`` (bind, advertised)."""
    global _desk
    with _desk_lock:
        if _desk is None:
            _desk = TokenDesk(*hosts)
        return _desk


_handed: List[Token] = []


def hdfs_token(authority: str) -> Optional[Token]:
    """The HDFS delegation token for the NameNode (or HA nameservice) ``authority``, from the
    sources in the module's order; None if none has one."""
    for path in _token_files(NODE_TOKEN_FILE_ENV):
        token = pick(_tokens_in(path), authority)
        if token is not None:
            return token
    token = pick(_handed, authority)
    return token if token is not None else own_token(authority)


def own_token(authority: str) -> Optional[Token]:
    """The token this process has of its own (not a node's, not handed): its provider's (the
    driver's JVM), else its YARN container's; what a driver's :class:`TokenDesk` gives out."""
    if _provider is not None:
        token = _provider(authority)
        if token is not None:
            return token
    for path in _token_files(TOKEN_FILE_ENV):
        token = pick(_tokens_in(path), authority, only_one=True)
        if token is not None:
            return token
    return None


def pick(tokens: List[Token], authority: str, only_one: bool = False) -> Optional[Token]:
    """The HDFS delegation token among ``tokens`` whose service is ``authority``'s NameNode:
    ``ha-hdfs:<nameservice>``, or its RPC address by name or by IP (Hadoop's default
    ``hadoop.security.token.service.use_ip``); with ``only_one`` (YARN's file, whose services
    other tools named), the only HDFS token if there is just one."""
    hdfs = [t for t in tokens if t.kind in _WEBHDFS_KINDS]
    wanted = _service_names(authority)
    for token in hdfs:
        if token.service in wanted:
            return token
    return hdfs[0] if only_one and len(hdfs) == 1 else None


def running_on_driver() -> bool:
    """Whether this process may use a JVM login of its own: not a TF node's process (its
    tokens come from its task) and not inside a Spark task (its executor has its own)."""
    if os.environ.get(NODE_TOKEN_FILE_ENV):
        return False
    task_context = getattr(sys.modules.get("pyspark"), "TaskContext", None)
    return task_context is None or task_context.get() is None


def kerberized(conf: dict) -> bool:
    return conf.get("hadoop.security.authentication", "simple").lower() == "kerberos"


def tokens_for(authorities: List[str], urls_of: Callable[[str], List[str]]) -> List[Token]:
    """The HDFS delegation token of each NameNode in ``authorities`` (a driver handing its
    nodes theirs); raises the missing-credentials error naming the first it has none for."""
    tokens = []
    for authority in dict.fromkeys(authorities):
        token = hdfs_token(authority)
        if token is None:
            raise missing_credentials(authority, urls_of(authority))
        tokens.append(token)
    return tokens


@functools.lru_cache(maxsize=64)
def _service_names(authority: str) -> frozenset:
    """(cached: a name lookup per request would cost more than the request)"""
    return frozenset(_names_of(authority))


def _names_of(authority: str) -> set:
    from tfspark.fs.config import DEFAULT_NAMENODE_RPC_PORT
    names = {authority, f"ha-hdfs:{authority}"}
    host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    port = port or str(DEFAULT_NAMENODE_RPC_PORT)
    names.add(f"{host}:{port}")
    try:
        names.add(f"{socket.gethostbyname(host)}:{port}")
    except OSError:
        pass
    return names


def _token_files(env_name: str) -> List[str]:
    path = os.environ.get(env_name)
    return [path] if path and os.path.exists(path) else []


def _tokens_in(path: str) -> List[Token]:
    """The tokens of ``path``, read again only when the file has changed."""
    st = os.stat(path)
    key = (st.st_ino, st.st_mtime_ns, st.st_size)
    with _files_lock:
        cached = _files.get(path)
        if cached is None or cached[0] != key:
            cached = _files[path] = (key, read_token_file(path))
        return cached[1]


def owner_short_name(token: Token) -> Optional[str]:
    """The HDFS user a delegation token acts as: its owner principal without ``/host`` and
    ``@REALM`` (what Hadoop's default auth_to_local rule makes of it)."""
    info = decode_identifier(token)
    if info is None or not info.owner:
        return None
    return info.owner.split("@", 1)[0].split("/", 1)[0]


def describe(token: Optional[Token]) -> str:
    """``"the HDFS delegation token for <service> (owner ..., issued ..., renewable until
    ...)"``: what an error may say of a token, nothing a server would accept."""
    if token is None:
        return "no HDFS delegation token"
    info = decode_identifier(token)
    text = f"the HDFS delegation token for {token.service or 'its NameNode'}"
    if info is not None:
        issued = info.issue_datetime.isoformat(timespec="seconds") if info.issue_datetime else "?"
        until = info.max_datetime.isoformat(timespec="seconds") if info.max_datetime else "?"
        text += f" (owner {info.owner}, issued {issued}, renewable until {until})"
    return text


def missing_credentials(authority: str, urls: List[str]) -> Exception:
    """The error of a process with nothing to show a Kerberized NameNode."""
    return error("permission", (
        f"HDFS at {authority} ({' or '.join(urls)}) uses Kerberos "
        "(hadoop.security.authentication=kerberos) and this process has no HDFS delegation "
        "token and no way to get one. On the driver, log in before starting: `kinit` (a ticket "
        "cache), or spark-submit --principal <user@REALM> --keytab <file>; tfspark then takes "
        "a token from Spark's JVM. In Spark tasks, tokens come from YARN "
        f"(${TOKEN_FILE_ENV}) or, for TF nodes, from the driver."))


class _RedactTokens(logging.Filter):
    """urllib3 logs each request's URL at DEBUG: never with a token in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "delegation=" in record.getMessage():
            record.msg, record.args = redact(record.getMessage()), None
        return True


_redacting = _RedactTokens()
logger = logging.getLogger(__name__)


def _redact_request_logs() -> None:
    for name in ("urllib3.connectionpool", "hdfs.client"):
        logger = logging.getLogger(name)
        if _redacting not in logger.filters:
            logger.addFilter(_redacting)


class DelegationAuth:
    """A requests auth that puts the current delegation token on each WebHDFS request to the
    NameNode (``delegation=``; DataNode URLs carry the NameNode's own), or hands over to
    SPNEGO when there is no token and requests-kerberos is installed."""

    def __init__(self, authority: str, urls: List[str]):
        self.authority, self.urls = authority, urls
        self._spnego = None
        _redact_request_logs()

    def __repr__(self) -> str:
        return f"DelegationAuth({self.authority!r})"

    def current(self) -> Tuple[Optional[Token], object]:
        token = hdfs_token(self.authority)
        if token is not None:
            return token, None
        if self._spnego is None:
            try:
                from requests_kerberos import OPTIONAL, HTTPKerberosAuth
            except ImportError:
                raise missing_credentials(self.authority, self.urls) from None
            self._spnego = HTTPKerberosAuth(mutual_authentication=OPTIONAL)
        return None, self._spnego

    def __call__(self, request):
        if "delegation=" in (request.url or ""):
            return request
        token, spnego = self.current()
        if spnego is not None:
            return spnego(request)
        request.prepare_url(request.url, {"delegation": token.url_string()})
        return request
