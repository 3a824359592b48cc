"""SQLAlchemy (2.0 or 2.1, whichever the venv holds) over psycopg 3 or asyncpg.

    sqlalchemy_compat.py psycopg|asyncpg

The tests are written against a synchronous Connection; with asyncpg they
run through AsyncConnection.run_sync, as async applications' code does.
"""

import asyncio
import datetime
import decimal
import enum
import sys
import uuid

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from compat_common import RO_PASSWORD, RO_USER, arun, check, eq, run, url

DRIVER = sys.argv[1] if len(sys.argv) > 1 else "psycopg"
print("sqlalchemy %s over %s" % (sa.__version__, DRIVER), file=sys.stderr)


class Mood(enum.Enum):
    sad = 1
    happy = 2


meta = sa.MetaData()
items = sa.Table(
    "items", meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False, unique=True),
    sa.Column("data", sa.LargeBinary),
    sa.Column("tags", pg.ARRAY(sa.Integer)),
    sa.Column("doc", pg.JSONB),
    sa.Column("at", sa.DateTime(timezone=True)),
    sa.Column("price", sa.Numeric(10, 2)),
    sa.Column("uid", sa.Uuid),
    sa.Column("mood", sa.Enum(Mood, name="mood")),
)


class Base(orm.DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    books: orm.Mapped[list["Book"]] = orm.relationship(back_populates="author")


class Book(Base):
    __tablename__ = "books"
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    title: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    author_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("authors.id"))
    author: orm.Mapped[Author] = orm.relationship(back_populates="books")


def t_connect(conn):
    eq(conn.execute(sa.text("SELECT 1")).scalar(), 1, "select 1")
    check(conn.dialect.server_version_info >= (13,), "server version")


def t_core_types(conn):
    meta.create_all(conn)
    ts = datetime.datetime(2024, 2, 29, 12, 30, tzinfo=datetime.timezone.utc)
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    conn.execute(items.insert(), [
        dict(name="a", data=b"\x00\x01", tags=[1, 2], doc={"k": [1]}, at=ts,
             price=decimal.Decimal("9.99"), uid=u, mood=Mood.happy),
        dict(name="b", data=None, tags=None, doc=None, at=None, price=None, uid=None, mood=None),
    ])
    row = conn.execute(sa.select(items).where(items.c.name == "a")).one()
    eq((row.data, row.tags, row.doc, row.at, row.price, row.uid, row.mood),
       (b"\x00\x01", [1, 2], {"k": [1]}, ts, decimal.Decimal("9.99"), u, Mood.happy), "row a")
    eq(conn.execute(sa.select(sa.func.count()).select_from(items).where(items.c.at.is_(None))).scalar(), 1, "nulls")
    eq(conn.execute(sa.select(items.c.name).where(items.c.tags.contains([2]))).scalars().all(), ["a"], "array contains")
    conn.commit()


def t_insert_many_returning(conn):
    t = sa.Table("many", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("v", sa.Integer))
    t.create(conn)
    ids = conn.execute(t.insert().returning(t.c.id, sort_by_parameter_order=True),
                       [dict(v=i) for i in range(200)]).scalars().all()
    eq(len(ids), 200, "ids returned")
    conn.commit()


def t_text_params(conn):
    got = conn.execute(sa.text("SELECT CAST(:a AS int) + CAST(:b AS int)"), dict(a=2, b=3)).scalar()
    eq(got, 5, "sum")


def t_orm(session):
    Base.metadata.create_all(session.connection())
    a = Author(name="Ann", books=[Book(title="One"), Book(title="Two")])
    session.add(a)
    session.commit()
    got = session.scalars(sa.select(Author).options(orm.selectinload(Author.books))).one()
    eq(sorted(b.title for b in got.books), ["One", "Two"], "books")
    session.execute(sa.update(Book).where(Book.title == "One").values(title="Uno"))
    session.execute(sa.delete(Book).where(Book.title == "Two"))
    session.commit()
    eq(session.scalars(sa.select(Book.title)).all(), ["Uno"], "after update and delete")


def t_transactions(conn):
    t = sa.Table("acct", sa.MetaData(), sa.Column("id", sa.Integer))
    t.create(conn)
    conn.commit()
    conn.execute(t.insert(), [dict(id=1)])
    sp = conn.begin_nested()
    conn.execute(t.insert(), [dict(id=2)])
    sp.rollback()
    conn.commit()
    eq(conn.execute(sa.select(t.c.id)).scalars().all(), [1], "savepoint rolled back")
    conn.execute(t.insert(), [dict(id=3)])
    conn.rollback()
    eq(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar(), 1, "rollback")


def t_isolation_level(conn):
    c = conn.execution_options(isolation_level="SERIALIZABLE")
    eq(c.execute(sa.text("SHOW transaction_isolation")).scalar(), "serializable", "isolation")
    c.rollback()


def t_error_recovery(conn):
    t = sa.Table("uniq", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    t.create(conn)
    conn.execute(t.insert(), [dict(id=1)])
    conn.commit()
    try:
        conn.execute(t.insert(), [dict(id=1)])
        raise AssertionError("no error")
    except sa.exc.IntegrityError:
        conn.rollback()
    eq(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar(), 1, "recovered")


def t_reflection(conn):
    # MetaData.reflect() and the inspector (SQLAlchemy 2.1 reads
    # current_setting($1::VARCHAR) with 'default_table_access_method').
    Base.metadata.create_all(conn)
    conn.commit()
    m = sa.MetaData()
    m.reflect(conn)
    check({"authors", "books"} <= set(m.tables), "reflected tables: %s" % sorted(m.tables))
    insp = sa.inspect(conn)
    eq([c["name"] for c in insp.get_columns("books")], ["id", "title", "author_id"], "columns")
    eq(insp.get_pk_constraint("books")["constrained_columns"], ["id"], "primary key")
    eq(insp.get_foreign_keys("books")[0]["referred_table"], "authors", "foreign key")
    check("public" in insp.get_schema_names(), "schemas")


def t_reflection_read_only(conn):
    # The same as a read-only identity (through pgward: the reader role,
    # whose verdict on a setting read at run time needs Bind's values).
    # With asyncpg, main_async reflects after this creates the tables.
    Base.metadata.create_all(conn)
    conn.commit()
    if DRIVER == "asyncpg":
        return
    engine = ro_engine()
    try:
        with engine.connect() as ro:
            m = sa.MetaData()
            m.reflect(ro)
            check({"authors", "books"} <= set(m.tables), "reflected tables: %s" % sorted(m.tables))
    finally:
        engine.dispose()


def t_stream_results(conn):
    total = 0
    result = conn.execution_options(stream_results=True, max_row_buffer=100).execute(
        sa.text("SELECT g FROM generate_series(1, 1000) g"))
    for r in result:
        total += r[0]
    eq(total, 500500, "sum")
    conn.rollback()


def ro_engine():
    ro_url = sa.engine.make_url(url(DRIVER)).set(username=RO_USER, password=RO_PASSWORD)
    if DRIVER == "asyncpg":
        return create_async_engine(ro_url)
    return sa.create_engine(ro_url)


async def reflect_read_only_async():
    engine = ro_engine()
    async with engine.connect() as ro:
        names = await ro.run_sync(lambda c: (lambda m: (m.reflect(c), set(m.tables))[1])(sa.MetaData()))
    await engine.dispose()
    check({"authors", "books"} <= names, "reflected tables: %s" % sorted(names))


SYNC = [(k[2:], v) for k, v in list(globals().items()) if k.startswith("t_") and k != "t_orm"]


def main_sync():
    engine = sa.create_engine(url(DRIVER), pool_pre_ping=True)
    for name, fn in SYNC:
        def one(fn=fn):
            with engine.connect() as conn:
                fn(conn)
        run(name, one)

    def orm_test():
        with orm.Session(engine) as s:
            t_orm(s)
    run("orm", orm_test)
    engine.dispose()


async def main_async():
    engine = create_async_engine(url(DRIVER), pool_pre_ping=True)
    for name, fn in SYNC:
        async def one(fn=fn, name=name):
            async with engine.connect() as conn:
                await conn.run_sync(fn)
            if name == "reflection_read_only":
                await reflect_read_only_async()
        await arun(name, one)

    async def orm_test():
        async with AsyncSession(engine) as s:
            await s.run_sync(t_orm)
    await arun("orm", orm_test)
    await engine.dispose()


if DRIVER == "asyncpg":
    asyncio.run(main_async())
else:
    main_sync()
