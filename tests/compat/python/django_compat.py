"""Django over psycopg 3: makemigrations, migrate, ORM queries, inspectdb, its test runner.

    django_compat.py [--server-side-binding]

With --server-side-binding, DATABASES OPTIONS server_side_binding=True:
psycopg 3 sends parameters separately (Django's connection setup then
prepares `SELECT set_config('TimeZone', $1, false)`). The session starts
in another time zone (PGTZ) so that Django has to set it.
"""

import datetime
import io
import os
import shutil
import sys
import tempfile

from compat_common import DATABASE, HOST, PASSWORD, PORT, USER, check, eq, run

SSB = "--server-side-binding" in sys.argv
os.environ["PGTZ"] = "America/New_York"

work = tempfile.mkdtemp(prefix="compat-django-")
app = os.path.join(work, "compatapp")
os.makedirs(os.path.join(app, "migrations"))
open(os.path.join(app, "__init__.py"), "w").close()
open(os.path.join(app, "migrations", "__init__.py"), "w").close()
with open(os.path.join(app, "models.py"), "w") as f:
    f.write('''
from django.contrib.postgres.fields import ArrayField
from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100, unique=True)
    born = models.DateField(null=True)


class Book(models.Model):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    title = models.CharField(max_length=200)
    pages = models.IntegerField(default=0)
    data = models.JSONField(default=dict)
    tags = ArrayField(models.CharField(max_length=20), default=list)
    cover = models.BinaryField(null=True)
    published = models.DateTimeField(null=True)

    class Meta:
        indexes = [models.Index(fields=["title"])]
''')
with open(os.path.join(app, "tests.py"), "w") as f:
    f.write('''
from django.db import transaction
from django.test import TestCase, TransactionTestCase

from .models import Author, Book


class OrmTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.a = Author.objects.create(name="Ann")

    def test_create_and_query(self):
        Book.objects.create(author=self.a, title="T", pages=3, data={"k": 1}, tags=["x"])
        self.assertEqual(Book.objects.filter(data__k=1, tags__contains=["x"]).count(), 1)

    def test_savepoint(self):
        try:
            with transaction.atomic():
                Author.objects.create(name="Ann")
        except Exception:
            pass
        self.assertEqual(Author.objects.count(), 1)


class CommitTests(TransactionTestCase):
    def test_commit(self):
        with transaction.atomic():
            Author.objects.create(name="Bob")
        self.assertTrue(Author.objects.filter(name="Bob").exists())
''')
sys.path.insert(0, work)

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(
    DEBUG=False,
    DATABASES={"default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE, "USER": USER, "PASSWORD": PASSWORD, "HOST": HOST, "PORT": str(PORT),
        "OPTIONS": {"server_side_binding": True} if SSB else {},
    }},
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                    "django.contrib.postgres", "compatapp"],
    USE_TZ=True,
    TIME_ZONE="UTC",
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    MIGRATION_MODULES={},
)
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import IntegrityError, connection, transaction  # noqa: E402
from django.db.models import Count, F, Q, Sum  # noqa: E402

print("django %s, server_side_binding=%s" % (django.__version__, SSB), file=sys.stderr)


def t_connect():
    connection.ensure_connection()
    with connection.cursor() as c:
        c.execute("SELECT 1")
        eq(c.fetchone()[0], 1, "select 1")
    eq(connection.connection.info.parameter_status("TimeZone"), "UTC", "Django set the session's TimeZone")


def t_makemigrations():
    call_command("makemigrations", "compatapp", verbosity=0)
    check(os.path.exists(os.path.join(app, "migrations", "0001_initial.py")), "migration written")


def t_migrate():
    call_command("migrate", verbosity=0, interactive=False)
    tables = connection.introspection.table_names()
    check({"compatapp_author", "compatapp_book", "auth_user"} <= set(tables), "tables: %s" % tables)


def t_orm_crud():
    from compatapp.models import Author, Book
    a = Author.objects.create(name="Ann", born=datetime.date(1970, 1, 2))
    when = datetime.datetime(2024, 2, 29, 12, 0, tzinfo=datetime.timezone.utc)
    b = Book.objects.create(author=a, title="One", pages=100, data={"k": [1, 2]}, tags=["a", "b"],
                            cover=b"\x00\xff", published=when)
    b2 = Book.objects.get(pk=b.pk)
    eq((b2.data, b2.tags, bytes(b2.cover), b2.published), ({"k": [1, 2]}, ["a", "b"], b"\x00\xff", when), "round trip")
    Book.objects.filter(pk=b.pk).update(pages=F("pages") + 1)
    eq(Book.objects.get(pk=b.pk).pages, 101, "F() update")
    Book.objects.create(author=a, title="Two", pages=5)
    Book.objects.filter(title="Two").delete()
    eq(Book.objects.count(), 1, "after delete")


def t_orm_queries():
    from compatapp.models import Author, Book
    bob = Author.objects.create(name="Bob")
    Book.objects.bulk_create([Book(author=bob, title="b%d" % i, pages=i, tags=["t%d" % (i % 3)]) for i in range(30)])
    got = Author.objects.annotate(n=Count("books"), p=Sum("books__pages")).get(name="Bob")
    eq((got.n, got.p), (30, 435), "annotate")
    eq(Book.objects.filter(Q(pages__lt=3) | Q(title="b29")).count(), 4, "Q objects")
    eq(Book.objects.filter(tags__contains=["t1"]).count(), 10, "array contains")
    eq(Book.objects.filter(data__k__0=1).count(), 1, "JSON path")
    eq([b.author.name for b in Book.objects.select_related("author").filter(pages=7)], ["Bob"], "select_related")
    eq(sum(len(a.books.all()) for a in Author.objects.prefetch_related("books")), 31, "prefetch_related")
    eq(sum(b.pages for b in Book.objects.filter(author=bob).iterator(chunk_size=7)), 435, "iterator")
    eq(list(Book.objects.filter(author=bob).order_by("-pages").values_list("pages", flat=True)[:2]), [29, 28], "values_list")
    check(Book.objects.filter(title__icontains="B2").exists(), "icontains")


def t_transactions():
    from compatapp.models import Author
    with transaction.atomic():
        Author.objects.create(name="Cy")
        try:
            with transaction.atomic():
                Author.objects.create(name="Cy")  # unique violation: savepoint rolled back
        except IntegrityError:
            pass
    eq(Author.objects.filter(name="Cy").count(), 1, "savepoint")
    try:
        with transaction.atomic():
            Author.objects.create(name="Dee")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    eq(Author.objects.filter(name="Dee").count(), 0, "rollback")


def t_raw_sql():
    with connection.cursor() as c:
        c.execute("SELECT %s::int + %s::int, %s::text", [2, 3, "x"])
        eq(c.fetchone(), (5, "x"), "raw")


def t_inspectdb():
    out = io.StringIO()
    call_command("inspectdb", "compatapp_book", "compatapp_author", stdout=out)
    text = out.getvalue()
    check("class CompatappBook(models.Model):" in text, "inspectdb model")
    check("models.ForeignKey('CompatappAuthor'" in text, "inspectdb foreign key")


def t_test_runner():
    connection.close()
    try:
        call_command("test", "compatapp", verbosity=0, interactive=False)
    except SystemExit as e:
        raise AssertionError("the test runner failed (exit %s)" % e.code)


for name, fn in [(k[2:], v) for k, v in list(globals().items()) if k.startswith("t_")]:
    run(name, fn)
connection.close()
shutil.rmtree(work, ignore_errors=True)
