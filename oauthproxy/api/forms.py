"""Forms anyone may send (the OAuth endpoints, the consent decision), parsed within bounds.

An OAuth request carries a handful of parameters. Quart parsed a form of up to 1 MiB on the
event loop every tenant's traffic shares, with no bound on its fields: `a&a&...`, 500,000 of
them, stalled it for ~0.4 s a request, from anyone (and the audit hook parsed it again)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from quart import request

FORM_MAX_BYTES = 16 * 1024
FORM_MAX_FIELDS = 100

Form = dict[str, list[str]]


class FormRefused(ValueError):
    """The body is larger, or has more fields, than an OAuth form may."""


async def bounded_form() -> Form:
    """The request's urlencoded form, each name's values in order (empty for another type);
    FormRefused past FORM_MAX_BYTES or FORM_MAX_FIELDS."""
    data = await request.get_data(cache=True, as_text=False, parse_form_data=False)
    if len(data) > FORM_MAX_BYTES:
        raise FormRefused(f"the body is larger than {FORM_MAX_BYTES} bytes")
    if request.mimetype != "application/x-www-form-urlencoded":
        return {}
    try:
        pairs = parse_qsl(
            data.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=FORM_MAX_FIELDS
        )
    except ValueError:
        raise FormRefused(f"the form has more than {FORM_MAX_FIELDS} fields") from None
    form: Form = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return form
