"""The answer of a list endpoint: one page of its query, as the page arguments ask for it."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Select

from service import queries

from .context import db
from .schemas.common import page_body


def page_answer(stmt: Select[Any], id_column: Any, args: dict[str, Any], *, descending: bool = False,
                view: Callable[[list[Any]], Sequence[Any]] = list) -> dict[str, Any]:
    """The rows of ``stmt`` after the cursor, ``args["limit"]`` of them at most (``args`` as
    :class:`~service.api.schemas.common.PageArgs` loads them), shown through ``view``, and the next
    page's cursor."""
    page = queries.paginate(db(), stmt, id_column, args["limit"], args["after_id"], descending=descending)
    return page_body(view(list(page.items)), page.next_id)
