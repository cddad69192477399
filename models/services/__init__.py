"""The service layer: every mutation of the domain goes through one of these functions.

Each takes the open ``UnitOfWork`` and keyword-only arguments, changes rows through
``uow.session`` and records what actually changed with ``uow.record``.
"""
