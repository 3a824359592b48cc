"""PostgreSQL's own programs: psql (\\copy, \\lo_*, the \\d family, \\dconfig),
pgbench (each query mode), pg_dump (plain, custom, directory with -j 4),
pg_restore and pg_dumpall, and pg_dump as a read-only identity.

Uses only the standard library; the programs come from PATH or
/usr/lib/postgresql/*/bin. Run by scripts/compat-full.sh.
"""

import glob
import os
import shutil
import subprocess
import tempfile

from compat_common import DATABASE, RO_PASSWORD, RO_USER, check, eq, main

work = tempfile.mkdtemp(prefix="compat-pgtools-")


def program(name):
    found = shutil.which(name)
    if found:
        return found
    for path in sorted(glob.glob("/usr/lib/postgresql/*/bin/" + name), reverse=True):
        return path
    raise RuntimeError("%s is not installed" % name)


def sh(name, *args, env=None, input=None, database=None):
    e = dict(os.environ)
    e.update(env or {})
    if database:
        e["PGDATABASE"] = database
    p = subprocess.run([program(name)] + list(args), capture_output=True, text=True,
                       env=e, input=input, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("%s %s: exit %d: %s" % (name, " ".join(args), p.returncode,
                                                   " | ".join(p.stderr.strip().splitlines()[-4:])))
    return p.stdout


def psql(*args, **kw):
    return sh("psql", "-X", "-v", "ON_ERROR_STOP=1", "-A", "-t", *args, **kw)


def t_psql_setup():
    psql("-c", "CREATE TABLE t (id int primary key, name text, at timestamptz default now())")
    psql("-c", "INSERT INTO t (id, name) SELECT g, 'n' || g FROM generate_series(1, 500) g")
    psql("-c", "CREATE VIEW v AS SELECT id FROM t WHERE id < 10")
    psql("-c", "CREATE FUNCTION f(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + 1'")
    eq(psql("-c", "SELECT count(*) FROM t").strip(), "500", "rows")


def t_psql_copy():
    path = os.path.join(work, "t.csv")
    psql("-c", "\\copy t (id, name) TO '%s' WITH (FORMAT csv)" % path)
    psql("-c", "CREATE TABLE t2 (id int, name text)")
    psql("-c", "\\copy t2 FROM '%s' WITH (FORMAT csv)" % path)
    eq(psql("-c", "SELECT count(*) FROM t2").strip(), "500", "rows copied back")


def t_psql_large_objects():
    path = os.path.join(work, "blob")
    with open(path, "wb") as f:
        f.write(os.urandom(100000))
    out = psql("-c", "\\lo_import '%s'" % path)
    oid = out.split()[-1]
    check(oid.isdigit(), "lo_import printed an oid: %r" % out)
    check(oid in psql("-c", "\\lo_list"), "lo_list shows it")
    back = os.path.join(work, "blob.out")
    psql("-c", "\\lo_export %s '%s'" % (oid, back))
    eq(open(back, "rb").read(), open(path, "rb").read(), "exported bytes")
    psql("-c", "\\lo_unlink %s" % oid)


def t_psql_describe():
    for cmd in ["\\d", "\\d+ t", "\\dt", "\\dv", "\\df f", "\\dn", "\\du", "\\l", "\\dx", "\\di", "\\dT", "\\dp t"]:
        psql("-c", cmd)
    check("name" in psql("-c", "\\d t"), "\\d t lists the columns")


def t_psql_dconfig():
    check("work_mem" in psql("-c", "\\dconfig work_mem"), "\\dconfig shows work_mem")
    psql("-c", "\\dconfig")


def t_pgbench_init():
    sh("pgbench", "-i", "-s", "1", "-q")


def t_pgbench_simple():
    sh("pgbench", "-M", "simple", "-c", "2", "-t", "20", "-n")


def t_pgbench_extended():
    sh("pgbench", "-M", "extended", "-c", "2", "-t", "20", "-n")


def t_pgbench_prepared():
    sh("pgbench", "-M", "prepared", "-c", "2", "-t", "20", "-n")


def t_pgbench_select_only_pipeline():
    script = os.path.join(work, "pipe.sql")
    with open(script, "w") as f:
        f.write("\\set aid random(1, 100000)\n\\startpipeline\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
                "SELECT abalance FROM pgbench_accounts WHERE aid = :aid + 1;\n\\endpipeline\n")
    sh("pgbench", "-M", "extended", "-c", "2", "-t", "20", "-n", "-f", script)


def t_pg_dump_plain():
    out = sh("pg_dump", "--no-owner")
    check("CREATE TABLE public.t" in out and "COPY public.t " in out, "plain dump has the table and its rows")


def t_pg_dump_custom_and_restore():
    path = os.path.join(work, "dump.custom")
    sh("pg_dump", "-Fc", "-f", path)
    target = DATABASE + "_restore"
    psql("-c", "CREATE DATABASE %s" % target)
    sh("pg_restore", "--no-owner", "-d", target, path)
    eq(psql("-c", "SELECT count(*) FROM t", database=target).strip(), "500", "restored rows")


def t_pg_dump_directory_parallel():
    # -j 4 synchronizes snapshots (pg_export_snapshot, SET TRANSACTION SNAPSHOT).
    path = os.path.join(work, "dump.dir")
    sh("pg_dump", "-Fd", "-j", "4", "-f", path)
    target = DATABASE + "_restore_dir"
    psql("-c", "CREATE DATABASE %s" % target)
    sh("pg_restore", "--no-owner", "-j", "2", "-d", target, path)
    eq(psql("-c", "SELECT count(*) FROM pgbench_accounts", database=target).strip(), "100000", "restored rows")


def t_pg_dumpall():
    out = sh("pg_dumpall", "--no-role-passwords", env={"PGDATABASE": "postgres"})
    check("CREATE TABLE public.t" in out, "pg_dumpall has the table")


def t_pg_dump_read_only():
    # A read-only identity dumps the tables it may read (item 2).
    out = sh("pg_dump", "--no-owner", "-t", "t", env={"PGUSER": RO_USER, "PGPASSWORD": RO_PASSWORD})
    check("COPY public.t " in out, "the rows of t")


main(globals())
shutil.rmtree(work, ignore_errors=True)
