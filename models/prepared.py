"""Hot-path SELECTs run on the pooled driver connection, compiled once per dialect.

Every API request runs one lookup (API key + org + role + version + visible projects). On
this kind of machine SQLAlchemy Core's per-execution machinery (connection wrapper, execution
context, result object) costs about as much as the round trip itself; a ``PreparedRead``
skips it and keeps what matters for correctness:

- the SQL is SQLAlchemy's own compilation of the statement, for the engine's dialect;
- bind and result values go through the statement's own type processors (UUIDs and
  datetimes on SQLite come back as SQLAlchemy would return them);
- driver errors are raised as SQLAlchemy's ``DBAPIError`` subclasses, and a disconnect
  invalidates the connection and starts a fresh pool, as Core invalidates its pool (the error
  handlers and the recovery see no difference).

Only for single statements without transaction needs: the connection is autocommit on
PostgreSQL, and a plain SELECT on SQLite opens no transaction.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError


def _wrapped(dialect: Dialect, sql: str, args, error: Exception, invalidated: bool):
    """The ``DBAPIError`` subclass Core would raise for this driver error."""
    return DBAPIError.instance(
        sql,
        args,
        error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=invalidated,
        dialect=dialect,
    )


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...] | None  # parameter order for positional paramstyles
    fixed: dict[str, Any]  # values the statement carries itself (literals as binds)
    binders: dict[str, Callable[[Any], Any]]
    readers: tuple[Callable[[Any], Any] | None, ...]
    row: type


class PreparedRead:
    """A SELECT built once, executed without Core's per-execution objects."""

    def __init__(self, statement: Select) -> None:
        self.statement = statement
        self._by_dialect: dict[str, _Compiled] = {}

    def rows(self, engine: Engine, **params: Any) -> list[tuple]:
        """All rows for ``params``, as named tuples of the statement's column keys."""
        dialect = engine.dialect
        compiled = self._by_dialect.get(dialect.name) or self._compile(dialect)
        args = self._arguments(compiled, params)
        dbapi_error = dialect.loaded_dbapi.Error
        try:
            raw = engine.raw_connection()
        except dbapi_error as error:  # the pool does not wrap what connecting raises
            invalidated = dialect.is_disconnect(error, None, None)
            raise _wrapped(dialect, compiled.sql, args, error, invalidated) from error
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(compiled.sql, args)
                fetched = cursor.fetchall()
            finally:
                cursor.close()
        except dbapi_error as error:
            invalidated = dialect.is_disconnect(error, raw.dbapi_connection, None)
            if invalidated:  # the server went away: none of the pooled sessions is usable
                raw.invalidate(error)
                engine.dispose()
            raise _wrapped(dialect, compiled.sql, args, error, invalidated) from error
        finally:
            raw.close()
        readers, row = compiled.readers, compiled.row
        return [
            row(*(v if read is None else read(v) for v, read in zip(r, readers, strict=True)))
            for r in fetched
        ]

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        binders = {}
        for name, bind in compiled.binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                binders[name] = process
        columns = list(self.statement.selected_columns)
        prepared = _Compiled(
            sql=compiled.string,
            names=tuple(compiled.positiontup) if dialect.positional else None,
            fixed={k: v for k, v in compiled.params.items() if v is not None},
            binders=binders,
            readers=tuple(
                c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
            ),
            row=namedtuple("Row", [c.key for c in columns]),  # noqa: PYI024
        )
        self._by_dialect[dialect.name] = prepared
        return prepared

    @staticmethod
    def _arguments(compiled: _Compiled, params: dict[str, Any]) -> dict | tuple:
        values = {**compiled.fixed, **params}
        for name, process in compiled.binders.items():
            if name in values:
                values[name] = process(values[name])
        if compiled.names is None:
            return values
        return tuple(values[name] for name in compiled.names)
