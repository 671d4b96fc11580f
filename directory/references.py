"""Foreign keys checked once per statement rather than row by row.

PostgreSQL checks a foreign key with one look-up per row written, at commit: for the tables a
sync fills in bulk (contacts, import history, the master's entries and ledger), that was a
fifth of the database's CPU in a full sync, and on the master it is paid while the master's
row lock is held (docs/scaling.md, "CPU per contact"). So those keys have no constraint in the
database (`db_constraint=False`), and the migration operation CheckReferences puts triggers in
its place that keep the same promise:

- rows inserted must name a row of the referenced table, checked once per INSERT or COPY
  statement against all its rows together (a statement trigger reading the transition table),
  and those referenced rows are share-locked as a foreign key locks them, so that one deleted
  meanwhile by another session is either refused or seen;
- a row whose reference is changed to another value is checked the same way, row by row (only
  rows whose reference changes fire it, as with a foreign key);
- a referenced row cannot be deleted while a row still names it (the application deletes or
  unlinks those first, as Django does for on_delete).

The differences from a foreign key: an insert is checked at the end of its statement, not at
commit (nothing here inserts a row before the one it names), and a TRUNCATE is not checked.
Errors are foreign-key violations (SQLSTATE 23503, IntegrityError in Django).

SQLite (the embedded default) gets row triggers that check inserted and changed rows the same
way (a foreign key there costs about what they do, and a single writer needs no locks), but no
check of deletes: Django empties an SQLite database (flush) with a DELETE per table in name
order, which SQLite's deferred foreign keys allow and an immediate trigger would refuse.
Django's own deletes unlink or delete the rows naming a deleted row (on_delete), and nothing in
this project deletes rows in SQL."""

from django.db.migrations.operations.base import Operation

POSTGRESQL_FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION interorg_reference_missing(
    child text, key_column text, parent text, missing text
) RETURNS void
LANGUAGE plpgsql AS $fn$
-- A row of `child` names, by `key_column`, the value `missing` that `parent` does not hold.
BEGIN
    RAISE EXCEPTION 'insert or update on table "%" violates the reference of "%" to "%"',
        child, key_column, parent
        USING ERRCODE = 'foreign_key_violation',
              DETAIL = format('Key (%s)=(%s) is not present in table "%s".',
                              key_column, missing, parent);
END
$fn$;

CREATE OR REPLACE FUNCTION interorg_references_inserted() RETURNS trigger
LANGUAGE plpgsql AS $fn$
-- After an INSERT statement: every non-null value of column TG_ARGV[0] of the new rows names
-- a row of table TG_ARGV[1] (by its column TG_ARGV[2]), which is locked as a foreign key would.
DECLARE
    wanted bigint;
    held bigint;
    missing text;
BEGIN
    EXECUTE format(
        'WITH wanted AS (SELECT DISTINCT %1$I AS key FROM new_rows WHERE %1$I IS NOT NULL), '
        'held AS (SELECT FROM %2$I parent JOIN wanted ON parent.%3$I = wanted.key '
        'FOR KEY SHARE OF parent) '
        'SELECT (SELECT count(*) FROM wanted), (SELECT count(*) FROM held)',
        TG_ARGV[0], TG_ARGV[1], TG_ARGV[2]
    ) INTO wanted, held;
    IF held < wanted THEN
        EXECUTE format(
            'SELECT %1$I::text FROM new_rows WHERE %1$I IS NOT NULL AND NOT EXISTS '
            '(SELECT FROM %2$I parent WHERE parent.%3$I = new_rows.%1$I) LIMIT 1',
            TG_ARGV[0], TG_ARGV[1], TG_ARGV[2]
        ) INTO missing;
        PERFORM interorg_reference_missing(TG_TABLE_NAME, TG_ARGV[0], TG_ARGV[1], missing);
    END IF;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION interorg_reference_changed() RETURNS trigger
LANGUAGE plpgsql AS $fn$
-- After a row's column TG_ARGV[0] changed to a non-null value: it names a row of TG_ARGV[1].
DECLARE
    found boolean;
BEGIN
    EXECUTE format(
        'SELECT true FROM %1$I parent WHERE parent.%2$I = ($1).%3$I FOR KEY SHARE',
        TG_ARGV[1], TG_ARGV[2], TG_ARGV[0]
    ) INTO found USING NEW;
    IF found IS NULL THEN
        PERFORM interorg_reference_missing(
            TG_TABLE_NAME, TG_ARGV[0], TG_ARGV[1], to_jsonb(NEW) ->> TG_ARGV[0]
        );
    END IF;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION interorg_references_deleted() RETURNS trigger
LANGUAGE plpgsql AS $fn$
-- After a DELETE statement on the referenced table: no row of TG_ARGV[0] names, by its column
-- TG_ARGV[1], a deleted row's column TG_ARGV[2].
DECLARE
    kept text;
BEGIN
    EXECUTE format(
        'SELECT old_rows.%3$I::text FROM old_rows WHERE EXISTS '
        '(SELECT FROM %1$I child WHERE child.%2$I = old_rows.%3$I) LIMIT 1',
        TG_ARGV[0], TG_ARGV[1], TG_ARGV[2]
    ) INTO kept;
    IF kept IS NOT NULL THEN
        RAISE EXCEPTION 'update or delete on table "%" violates the reference of "%" from "%"',
            TG_TABLE_NAME, TG_ARGV[1], TG_ARGV[0]
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('Key (%s)=(%s) is still referenced from table "%s".',
                                  TG_ARGV[2], kept, TG_ARGV[0]);
    END IF;
    RETURN NULL;
END
$fn$;
"""


def _names(child: str, column: str) -> dict[str, str]:
    """Trigger names (PostgreSQL keeps them per table; SQLite per schema)."""
    return {which: f"{child}_{column}_{which}"[:63] for which in ("inserted", "changed", "deleted")}


def _postgresql_create(q, child, column, parent, key) -> list[str]:
    names = _names(child, column)
    arguments = f"'{column}', '{parent}', '{key}'"
    return [
        POSTGRESQL_FUNCTIONS,
        f"CREATE TRIGGER {q(names['inserted'])} AFTER INSERT ON {q(child)} "
        f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        f"EXECUTE FUNCTION interorg_references_inserted({arguments})",
        f"CREATE TRIGGER {q(names['changed'])} AFTER UPDATE OF {q(column)} ON {q(child)} "
        f"FOR EACH ROW WHEN (NEW.{q(column)} IS DISTINCT FROM OLD.{q(column)} "
        f"AND NEW.{q(column)} IS NOT NULL) "
        f"EXECUTE FUNCTION interorg_reference_changed({arguments})",
        f"CREATE TRIGGER {q(names['deleted'])} AFTER DELETE ON {q(parent)} "
        f"REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
        f"EXECUTE FUNCTION interorg_references_deleted('{child}', '{column}', '{key}')",
    ]


def _postgresql_drop(q, child, column, parent, key) -> list[str]:
    names = _names(child, column)
    return [
        f"DROP TRIGGER IF EXISTS {q(names['inserted'])} ON {q(child)}",
        f"DROP TRIGGER IF EXISTS {q(names['changed'])} ON {q(child)}",
        f"DROP TRIGGER IF EXISTS {q(names['deleted'])} ON {q(parent)}",
    ]


def _sqlite_create(q, child, column, parent, key) -> list[str]:
    names = _names(child, column)
    absent = (
        f"NEW.{q(column)} IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM {q(parent)} WHERE {q(key)} = NEW.{q(column)})"
    )
    refused = f"SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: {child}.{column}')"
    return [
        f"CREATE TRIGGER {q(names['inserted'])} BEFORE INSERT ON {q(child)} "
        f"WHEN {absent} BEGIN {refused}; END",
        f"CREATE TRIGGER {q(names['changed'])} BEFORE UPDATE OF {q(column)} ON {q(child)} "
        f"WHEN {absent} BEGIN {refused}; END",
    ]


def _sqlite_drop(q, child, column, parent, key) -> list[str]:
    names = _names(child, column)
    return [f"DROP TRIGGER IF EXISTS {q(names[which])}" for which in ("inserted", "changed")]


# By database vendor: the statements that create the triggers, and those that drop them.
_STATEMENTS = {
    "postgresql": (_postgresql_create, _postgresql_drop),
    "sqlite": (_sqlite_create, _sqlite_drop),
}


class CheckReferences(Operation):
    """Check a foreign key without a database constraint (db_constraint=False) by triggers:
    see the module's docstring. Nothing changes in Django's model state."""

    reversible = True
    reduces_to_sql = True

    def __init__(self, model_name: str, name: str):
        self.model_name = model_name
        self.name = name

    def deconstruct(self):
        return (self.__class__.__name__, [], {"model_name": self.model_name, "name": self.name})

    def state_forwards(self, app_label, state):
        pass

    def _tables(self, app_label, state) -> tuple[str, str, str, str]:
        model = state.apps.get_model(app_label, self.model_name)
        field = model._meta.get_field(self.name)
        return (
            model._meta.db_table,
            field.column,
            field.related_model._meta.db_table,
            field.target_field.column,
        )

    def _run(self, schema_editor, state, app_label, create: bool) -> None:
        statements = _STATEMENTS.get(schema_editor.connection.vendor)
        if statements is None:
            return
        q = schema_editor.connection.ops.quote_name
        make, drop = statements
        for statement in (make if create else drop)(q, *self._tables(app_label, state)):
            schema_editor.execute(statement, params=None)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        self._run(schema_editor, to_state, app_label, create=True)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        self._run(schema_editor, from_state, app_label, create=False)

    def describe(self):
        return f"Check the references of {self.model_name}.{self.name} by triggers"

    @property
    def migration_name_fragment(self):
        return f"check_{self.model_name.lower()}_{self.name.lower()}"
