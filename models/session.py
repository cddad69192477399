"""Engines and sessions: one ``Database`` per app, bound from ``DATABASE_URL``.

Reads use ``read_session()``, one snapshot per session (REPEATABLE READ on PostgreSQL, a
deferred transaction on SQLite); writes never open a session themselves, they go through
``models.uow.UnitOfWork``, which uses ``write_engine`` (on PostgreSQL a unit of work that is one
statement uses a connection of ``one_statement_engine``, autocommit). On SQLite the driver's
implicit transactions are replaced by explicit ``BEGIN`` (so a read transaction is one
snapshot) and writers take ``BEGIN IMMEDIATE`` (so two writers queue instead of failing to
upgrade a lock).

A database restart leaves every pooled PostgreSQL connection dead. Each checkout first asks
the kernel, without a round trip, whether the idle socket has anything to read: an idle
connection has nothing, a connection the server closed has its farewell or EOF. Such a
connection is discarded with every other pooled one opened before it (the pool is
invalidated) and replaced before anything of the caller's reaches the server, so no read and
no unit of work meets a connection the restart killed. A hot-path read that loses its
connection mid-statement anyway is sent once more on a fresh one (a SELECT is safe to
resend); a write that may have reached the server is never resent.
"""

from __future__ import annotations

import select
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker

from models.prepared import PreparedRead

SQLITE_BUSY_TIMEOUT_S = 30


class Database:
    """The engines and session factory of one app.

    On PostgreSQL no wait is unbounded: ``connect_timeout_s`` to connect (libpq's own
    default is over two minutes against a server that does not answer), ``lock_timeout_ms``
    for any statement's wait on a lock (a migration, a long write), and
    ``statement_timeout_ms`` for the per-request one-statement reads (``read_rows``,
    ``read_connection``), which take well under a millisecond. Writes and sessions have no
    statement limit: deleting a big project moves its sandboxes in one long UPDATE. A limit
    that fires is ``is_time_limit``; a recount sets its own for its transaction. Settings
    given in the URL (``?options=``, ``?connect_timeout=``) are kept.
    """

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        connect_timeout_s: int | None = None,
        lock_timeout_ms: int | None = None,
        statement_timeout_ms: int | None = None,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        limits = read_limits = {}
        if not self.is_sqlite:
            limits = _postgres_limits(url, connect_timeout_s, lock_timeout_ms, None)
            read_limits = _postgres_limits(
                url, connect_timeout_s, lock_timeout_ms, statement_timeout_ms
            )
        if self.is_sqlite:
            self.engine = create_engine(
                url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}
            )
            _use_explicit_sqlite_transactions(self.engine)
        else:
            # No pre-ping: it costs a round trip per checkout on the hot path; a poll of the
            # socket finds the connections a restart killed (_discard_dead_on_checkout).
            self.engine = create_engine(
                url, echo=echo, pool_size=10, pool_recycle=1800, connect_args=limits
            )
            _discard_dead_on_checkout(self.engine)
        self.write_engine: Engine = self.engine.execution_options(begin_immediate=True)
        self.snapshot_engine: Engine = (
            self.engine
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="REPEATABLE READ")
        )
        # Their own pools, autocommit from connect: switching a pooled connection's isolation
        # level per checkout would double the cost of the hot path's one-statement reads and
        # writes. An autocommit connection never holds a transaction, so there is nothing to
        # roll back when it returns to the pool. Reads get the statement limit; the one
        # statement of a sandbox write may wait for its org's lock and gets only the lock's.
        self.autocommit_engine: Engine = self._autocommit_pool(url, echo, read_limits)
        self.one_statement_engine: Engine = self._autocommit_pool(url, echo, limits)
        self._sessions = sessionmaker(self.snapshot_engine, expire_on_commit=False)

    def _autocommit_pool(self, url: str, echo: bool, limits: dict) -> Engine:
        if self.is_sqlite:
            return self.engine
        engine = create_engine(
            url,
            echo=echo,
            pool_size=10,
            pool_recycle=1800,
            isolation_level="AUTOCOMMIT",
            pool_reset_on_return=None,
            connect_args=limits,
        )
        _discard_dead_on_checkout(engine)
        return engine

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """A connection for reads of ONE statement each (autocommit on PostgreSQL).

        Each statement is its own snapshot, and no BEGIN/ROLLBACK round trips are paid: the
        hot path's lookups are single statements.
        """
        with self.autocommit_engine.connect() as conn:
            yield conn

    def read_rows(self, prepared: PreparedRead, **params) -> list[tuple]:
        """The rows of a hot-path ``PreparedRead``, as one autocommit statement; sent once
        more on a fresh connection if the server dropped the first mid-statement."""
        try:
            return prepared.rows(self.autocommit_engine, **params)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
        return prepared.rows(self.autocommit_engine, **params)

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A read-only session whose statements all see one snapshot; rolled back at the end."""
        with self._sessions() as session:
            yield session

    def write_session(self) -> Session:
        """A session on the writer engine, for the unit of work only."""
        return Session(self.write_engine, expire_on_commit=False)

    def dispose(self) -> None:
        self.engine.dispose()
        self.autocommit_engine.dispose()
        self.one_statement_engine.dispose()


def _postgres_limits(
    url: str,
    connect_timeout_s: int | None,
    lock_timeout_ms: int | None,
    statement_timeout_ms: int | None,
) -> dict:
    """libpq connection parameters for the time limits (none for an unset or zero limit),
    added to what the URL itself sets."""
    query = make_url(url).query
    limits: dict = {}
    if connect_timeout_s and "connect_timeout" not in query:
        limits["connect_timeout"] = int(connect_timeout_s)
    given = query.get("options", "")
    options = [given] if isinstance(given, str) else list(given)
    if lock_timeout_ms:
        options.append(f"-c lock_timeout={int(lock_timeout_ms)}")
    if statement_timeout_ms:
        options.append(f"-c statement_timeout={int(statement_timeout_ms)}")
    if any(options):
        limits["options"] = " ".join(o for o in options if o)
    return limits


def wait_for_locks(db: Database, conn: Session | Connection) -> None:
    """Lift the lock wait limit for the rest of ``conn``'s transaction: admin work (a rebuild,
    a verify) waits for a migration's lock rather than give up."""
    if not db.is_sqlite:
        conn.execute(text("SET LOCAL lock_timeout = 0"))


def is_time_limit(error: DBAPIError) -> bool:
    """Whether a driver error is a time limit firing: PostgreSQL cancelling a statement
    (``statement_timeout``) or its wait for a lock (``lock_timeout``), or SQLite interrupted
    by a progress handler."""
    orig = error.orig
    return type(orig).__name__ in {"QueryCanceled", "LockNotAvailable"} or "interrupted" in str(
        orig
    )


def is_idle_and_open(dbapi_connection, poll=select.poll) -> bool:
    """Whether a pooled driver connection still looks usable, judged without a round trip:
    open, and nothing to read on its socket (the server has not said goodbye or hung up)."""
    try:
        if dbapi_connection.closed:
            return False
        poller = poll()
        poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError, AttributeError):  # no socket any more: closed
        return False


def os_poll():
    """``select.poll`` as the OS gives it, also where gevent's workers patched it: a poll with
    no timeout never waits, so the cooperative one would only add its watchers and a turn of
    gevent's hub (twice per sandbox write, one checkout each: 3% of its worker CPU)."""
    monkey = sys.modules.get("gevent.monkey")
    return select.poll if monkey is None else monkey.get_original("select", "poll")


def _discard_dead_on_checkout(engine: Engine) -> None:
    """Replace a dead pooled connection at checkout, and every one opened before it."""
    poll = os_poll()  # the engine is made after the workers patched the standard library

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection, _record, _proxy):
        if not is_idle_and_open(dbapi_connection, poll):
            raise InvalidatePoolError("the server closed this pooled connection")


def _use_explicit_sqlite_transactions(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        immediate = conn.get_execution_options().get("begin_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
