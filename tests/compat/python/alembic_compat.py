"""Alembic: init, autogenerate, upgrade, compare, downgrade (SQLAlchemy over psycopg 3)."""

import os
import shutil
import sys
import tempfile

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from compat_common import check, eq, run, url

print("alembic over sqlalchemy %s" % sa.__version__, file=sys.stderr)

MODELS = '''
import sqlalchemy as sa
metadata = sa.MetaData()
users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(200), nullable=False, unique=True),
    sa.Column("created", sa.DateTime(timezone=True), server_default=sa.func.now()),
    %s
)
posts = sa.Table(
    "posts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), index=True),
    sa.Column("body", sa.Text),
    sa.Column("kind", sa.Enum("note", "page", name="post_kind")),
)
'''

work = tempfile.mkdtemp(prefix="compat-alembic-")
sys.path.insert(0, work)
engine = sa.create_engine(url("psycopg"))
cfg = Config(os.path.join(work, "alembic.ini"))
scripts = os.path.join(work, "migrations")


def write_models(extra_column=""):
    with open(os.path.join(work, "compat_models.py"), "w") as f:
        f.write(MODELS % extra_column)
    sys.modules.pop("compat_models", None)


def revision_text(rev):
    return open(rev.path).read()


def tables():
    with engine.connect() as c:
        return set(sa.inspect(c).get_table_names())


def t_init():
    command.init(cfg, scripts)
    cfg.set_main_option("script_location", scripts)
    cfg.set_main_option("sqlalchemy.url", url("psycopg").replace("%", "%%"))
    env = os.path.join(scripts, "env.py")
    text = open(env).read()
    check("target_metadata = None" in text, "env.py has target_metadata")
    text = text.replace("target_metadata = None", "from compat_models import metadata as target_metadata")
    open(env, "w").write(text)
    write_models()


def t_autogenerate():
    rev = command.revision(cfg, message="initial", autogenerate=True)
    text = revision_text(rev)
    for want in ("op.create_table('users'", "op.create_table('posts'", "op.create_index("):
        check(want in text, "the revision has %s" % want)


def t_upgrade():
    command.upgrade(cfg, "head")
    check({"users", "posts", "alembic_version"} <= tables(), "tables: %s" % sorted(tables()))


def t_compare_no_changes():
    import compat_models
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), compat_models.metadata)
    eq(diff, [], "differences after upgrade")


def t_autogenerate_add_column():
    write_models('sa.Column("name", sa.String(100)),')
    rev = command.revision(cfg, message="add name", autogenerate=True)
    check("op.add_column('users'" in revision_text(rev), "the revision adds the column")
    command.upgrade(cfg, "head")
    with engine.connect() as c:
        cols = [x["name"] for x in sa.inspect(c).get_columns("users")]
    check("name" in cols, "column added: %s" % cols)


def t_downgrade():
    command.downgrade(cfg, "-1")
    with engine.connect() as c:
        cols = [x["name"] for x in sa.inspect(c).get_columns("users")]
    check("name" not in cols, "column dropped: %s" % cols)
    command.downgrade(cfg, "base")
    eq(tables() & {"users", "posts"}, set(), "tables after downgrade to base")


def t_offline_sql():
    # `alembic upgrade --sql`: renders SQL without connecting.
    command.upgrade(cfg, "head", sql=True)


for name, fn in [(k[2:], v) for k, v in list(globals().items()) if k.startswith("t_")]:
    run(name, fn)
engine.dispose()
shutil.rmtree(work, ignore_errors=True)
