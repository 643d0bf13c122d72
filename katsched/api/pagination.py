"""The original's pagination links (reference §2.14): the request URL with `limit` and `offset` replaced."""

from starlette.datastructures import URL


def page_links(url: URL, offset: int, limit: int, count: int) -> tuple[str | None, str | None]:
    """(next, previous). As in the original, `next` is given up to and including the page that starts at
    `count` (one empty page at the exact end), and `previous` only when a whole page fits before `offset`."""
    following = offset + limit
    preceding = offset - limit
    next_link = str(url.include_query_params(limit=limit, offset=following)) if following <= count else None
    previous_link = str(url.include_query_params(limit=limit, offset=preceding)) if preceding >= 0 else None
    return next_link, previous_link
