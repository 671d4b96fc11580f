"""Bulk SQL for the sync path, where Django's per-value work costs more than the database's.

On psycopg 3, Django's bulk_create prepares every value through its field and then quotes each
one into UNNEST arrays in Python, and an `__in` lookup over thousands of values becomes as many
placeholders, each adapted and quoted, in a query too long for psycopg's cache. For a full sync
that costs several times the database's own work. Here rows are written with COPY (psycopg
formats them in C) inside the current transaction, so a failed cycle still leaves nothing
behind; updates and long lists of values to match travel as one parameter.
"""

import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from datetime import datetime
from itertools import chain

import orjson
from django.core.exceptions import EmptyResultSet
from django.db import connections, models, router
from django.db.models import DateTimeField, Func
from django.utils import timezone

from interorg_site import encryption
from interorg_site.encryption import EncryptedTextField

# Joins the values of OneOf on PostgreSQL: the ASCII unit separator.
SEPARATOR = "\x1f"


def copy_insert(
    model: type[models.Model],
    fields: Sequence[str],
    rows: Iterable[Sequence],
    *,
    using: str | None = None,
) -> int:
    """Insert `rows` (tuples of values in `fields` order) into `model`'s table; return how many.

    Rows hold what the model's fields hold (str, int, bool, UUID, aware datetime, None, and any
    JSON value for a JSONField), not model instances: building thousands of instances costs more
    than writing them. A concrete field left out of `fields` gets its default, and an auto_now or
    auto_now_add field the current time, as bulk_create would give them. Nothing comes back: no
    primary keys, no signals, no model validation (bulk_create does none either).
    """
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return 0  # no statement at all, like bulk_create([])
    rows = chain([first], rows)
    using = using or router.db_for_write(model)
    connection = connections[using]
    if connection.vendor != "postgresql":
        return _bulk_create(model, fields, rows, using)
    columns, complete = _row_builder(model, fields)
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(column) for column in columns)
    return _copy(connection, f"COPY {table} ({names}) FROM STDIN", map(complete, rows))


def _bulk_create(model, fields: Sequence[str], rows: Iterable[Sequence], using: str) -> int:
    attnames = [model._meta.get_field(name).attname for name in fields]
    created = model._default_manager.db_manager(using).bulk_create(
        model(**dict(zip(attnames, row, strict=True))) for row in rows
    )
    return len(created)


def _row_builder(model, fields: Sequence[str]) -> tuple[list[str], Callable[[Sequence], tuple]]:
    """The columns COPY writes, and a function turning a caller's row into their values."""
    given = [model._meta.get_field(name) for name in fields]
    named = {field.attname for field in given}
    fixed, made = [], []  # left-out fields: one value for every row, or one made per row
    for field in model._meta.concrete_fields:
        if field.attname in named or field is model._meta.auto_field:
            continue
        per_row = not _stamped(field) and field.has_default() and callable(field.default)
        (made if per_row else fixed).append(field)
    now = timezone.now()
    constants = tuple(
        _db_text(field, now if _stamped(field) else field.get_default()) for field in fixed
    )
    encoders = [(index, field) for index, field in enumerate(given) if _encoded(field)]
    # The rows of one COPY share a few times (the time of the write), each written once.
    times: dict[datetime, str] = {}
    stamps = [index for index, field in enumerate(given) if isinstance(field, DateTimeField)]

    def complete(row: Sequence) -> tuple:
        if encoders or stamps:
            row = list(row)
            for index, field in encoders:
                row[index] = _db_value(field, row[index])
            for index in stamps:
                value = row[index]
                if isinstance(value, datetime):
                    row[index] = times.get(value) or times.setdefault(value, _time_text(value))
        return (*row, *constants, *(_db_value(field, field.default()) for field in made))

    return [field.column for field in (*given, *fixed, *made)], complete


def _db_text(field: models.Field, value):
    """A value the same for every row, as COPY's text: a time written once for all of them
    (psycopg writes each datetime anew, slower than the rest of a row together)."""
    if isinstance(value, datetime):
        return _time_text(value)
    return _db_value(field, value)


def _time_text(value: datetime) -> str:
    # ISO 8601, as psycopg writes it; a naive time is read in the connection's time zone, as
    # psycopg has it read.
    return value.isoformat()


def _stamped(field: models.Field) -> bool:
    return getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)


def _is_json(field: models.Field) -> bool:
    return isinstance(field, models.JSONField)


def _encoded(field: models.Field) -> bool:
    """Whether COPY needs the value otherwise than the model holds it."""
    return _is_json(field) or isinstance(field, EncryptedTextField)


def _db_value(field: models.Field, value):
    """A value as COPY's text format takes it: JSON fields serialized with their encoder, and
    secrets encrypted as the field stores them."""
    if value is None or not _encoded(field):
        return value
    if isinstance(field, EncryptedTextField):
        return encryption.encrypt(value) if value else value
    return json_text(value, field.encoder)


# What orjson writes itself only where json.dumps would write the same JSON: datetimes,
# dataclasses and subclasses of the JSON types go to the field's encoder, as json.dumps sends
# them.
_PASSTHROUGH = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def json_text(value, encoder: type[json.JSONEncoder] | None = None) -> str:
    """`value` as JSON text, as json.dumps(value, cls=encoder, ensure_ascii=False) gives it but
    for the spaces: orjson writes the plain JSON types (an entry's attributes) eight times
    faster, and what it does not take (a key that is not a string, a value only `encoder`
    knows) is written by json.dumps. A float that is not finite, which JSON has no word for,
    is written as null (json.dumps writes `Infinity`, which PostgreSQL refuses); the sync's
    JSON values are attributes, all strings."""
    try:
        return orjson.dumps(value, option=_PASSTHROUGH).decode()
    except TypeError:
        return json.dumps(value, cls=encoder, ensure_ascii=False)


def _copy(connection, sql: str, rows: Iterable[tuple]) -> int:
    """Run one COPY … FROM STDIN on the connection's cursor, logged like any other query."""
    count = 0
    with connection.cursor() as cursor:
        connection.validate_no_broken_transaction()
        logged = cursor.debug_sql(sql) if connection.queries_logged else nullcontext()
        with logged, connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
    return count


def update_objects(
    model: type[models.Model],
    objs: Iterable[models.Model],
    fields: Sequence[str],
    *,
    using: str | None = None,
) -> int:
    """Save `fields` of every object in `objs` in one statement; return how many rows matched.

    What bulk_update does (values as they are on the objects, no pre_save, no signals; an object
    listed twice is saved as its last occurrence), without its CASE WHEN pk = … THEN … per field:
    PostgreSQL tries every branch for every row, so bulk_update slows down with the square of the
    number of objects (10,000 take minutes). Here the rows travel as one JSON parameter, joined to
    the table by primary key.
    """
    latest = list({obj.pk: obj for obj in objs}.values())
    if not latest:
        return 0
    using = using or router.db_for_write(model)
    connection = connections[using]
    if connection.vendor != "postgresql":
        return model._default_manager.db_manager(using).bulk_update(latest, fields)
    pk = model._meta.pk
    targets = [model._meta.get_field(name) for name in fields]
    records = [
        {
            pk.column: obj.pk,
            **{f.column: _json_value(f, getattr(obj, f.attname), connection) for f in targets},
        }
        for obj in latest
    ]
    parameter = json.dumps(records, default=_json_default, ensure_ascii=False)
    keys = [pk.get_db_prep_value(obj.pk, connection) for obj in latest]
    with connection.cursor() as cursor:
        cursor.execute(_update_sql(model, targets, connection), [parameter, keys])
        return cursor.rowcount


def _update_sql(model, targets: list[models.Field], connection) -> str:
    quote = connection.ops.quote_name
    table, pk = quote(model._meta.db_table), model._meta.pk
    record = ", ".join(
        f"{quote(field.column)} {_record_type(field, connection)}" for field in [pk, *targets]
    )
    assignments = ", ".join(f"{quote(f.column)} = changed.{quote(f.column)}" for f in targets)
    return (
        f"UPDATE {table} SET {assignments} "
        f"FROM jsonb_to_recordset(%s::jsonb) AS changed({record}) "
        f"WHERE {table}.{quote(pk.column)} = changed.{quote(pk.column)} "
        # The keys again as an array: the planner then reads just those rows by the primary
        # key. Joined by the record set alone, with statistics taken before a bulk COPY grew
        # the table, it hashes the whole table for every update (80 ms at 180,000 recipients,
        # for 5 rows).
        f"AND {table}.{quote(pk.column)} = ANY(%s)"
    )


def _json_value(field: models.Field, value, connection):
    """A value as jsonb_to_recordset reads it back into the column's type."""
    if _is_json(field):
        return value
    return field.get_db_prep_save(value, connection)


def _json_default(value) -> str:
    """UUIDs, datetimes and decimals as the text PostgreSQL parses them from."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _record_type(field: models.Field, connection) -> str:
    # Text is read as text: the column's own varchar(n) then refuses a longer value, as an
    # UPDATE with bulk_update would.
    return "text" if _is_text(field) else field.db_type(connection)


def _is_text(field: models.Field) -> bool:
    return isinstance(field, models.CharField | models.TextField)


class OneOf(Func):
    """True where `expression` equals one of `values`: what `__in` asks, sent as one parameter
    however many values there are, where `__in` takes a placeholder for each.

    On PostgreSQL the values are one string that the planner itself splits into a constant
    array, so `= ANY(…)` is planned as for a literal list (index probes, a hashed lookup); a
    JSON subquery instead could be re-read for every row of a join planned on stale statistics.
    A value holding the separator, which no address, key or GUID does, gets the plain list.
    """

    conditional = True
    output_field = models.BooleanField()

    def __init__(self, expression, values: Iterable):
        super().__init__(expression)
        self.values = [value for value in values if value is not None]  # NULL equals nothing

    def _prepared(self, connection) -> list:
        if not self.values:
            raise EmptyResultSet  # as `__in=[]` does: no query at all
        field = self.source_expressions[0].output_field
        if _is_text(field):  # strings are what a text column compares as they are
            prepare = field.get_db_prep_value
            return [v if isinstance(v, str) else prepare(v, connection) for v in self.values]
        return [field.get_db_prep_value(value, connection) for value in self.values]

    def as_sql(self, compiler, connection, **extra_context):
        lhs, params = compiler.compile(self.source_expressions[0])
        values = self._prepared(connection)
        placeholders = ", ".join(["%s"] * len(values))
        return f"{lhs} IN ({placeholders})", [*params, *values]

    def as_postgresql(self, compiler, connection, **extra_context):
        values = [str(value) for value in self._prepared(connection)]
        if any(SEPARATOR in value for value in values):
            return self.as_sql(compiler, connection, **extra_context)
        lhs, params = compiler.compile(self.source_expressions[0])
        field = self.source_expressions[0].output_field
        cast = "text" if _is_text(field) else field.cast_db_type(connection)
        array = f"CAST(string_to_array(%s, chr({ord(SEPARATOR)})) AS {cast}[])"
        return f"{lhs} = ANY({array})", [*params, SEPARATOR.join(values)]

    def as_sqlite(self, compiler, connection, **extra_context):
        lhs, params = compiler.compile(self.source_expressions[0])
        values = json.dumps(self._prepared(connection), default=str, ensure_ascii=False)
        return f"{lhs} IN (SELECT value FROM json_each(%s))", [*params, values]
