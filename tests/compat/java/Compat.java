// pgjdbc: what its users do on connect and in normal work. Run in
// source-file mode: java -cp postgresql.jar Compat.java
// Each test prints `COMPAT ok NAME` or `COMPAT fail NAME ERROR`.

import java.io.ByteArrayOutputStream;
import java.io.StringReader;
import java.sql.*;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Callable;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;
import org.postgresql.copy.CopyManager;
import org.postgresql.largeobject.LargeObject;
import org.postgresql.largeobject.LargeObjectManager;
import org.postgresql.util.PGobject;

public class Compat {
    interface Test { void run() throws Exception; }

    static String env(String k, String d) {
        String v = System.getenv(k);
        return v == null ? d : v;
    }

    static final String URL = "jdbc:postgresql://" + env("PGHOST", "127.0.0.1") + ":" + env("PGPORT", "5432")
            + "/" + env("PGDATABASE", "postgres") + "?sslmode=disable";

    static Connection connect(String... extra) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", env("PGUSER", "postgres"));
        p.setProperty("password", env("PGPASSWORD", ""));
        for (int i = 0; i + 1 < extra.length; i += 2) p.setProperty(extra[i], extra[i + 1]);
        return DriverManager.getConnection(URL, p);
    }

    static void eq(Object got, Object want, String what) {
        if (got == null ? want != null : !got.equals(want)) {
            throw new AssertionError(what + ": got " + got + ", want " + want);
        }
    }

    static void check(boolean cond, String what) {
        if (!cond) throw new AssertionError(what);
    }

    static Object one(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet r = s.executeQuery(sql)) {
            r.next();
            return r.getObject(1);
        }
    }

    static void run(String name, Test t) {
        try {
            t.run();
            System.out.println("COMPAT ok " + name);
        } catch (Throwable e) {
            String msg = (e.getClass().getSimpleName() + ": " + e.getMessage()).replace('\n', ' ');
            System.out.println("COMPAT fail " + name + " " + (msg.length() > 500 ? msg.substring(0, 500) : msg));
            if (System.getenv("COMPAT_TRACE") != null) e.printStackTrace();
        }
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        run("connect", () -> {
            try (Connection c = connect()) {
                eq(one(c, "SELECT 1"), 1, "select 1");
                check(c.getMetaData().getDatabaseMajorVersion() >= 13, "server version");
            }
        });
        run("params", () -> {
            try (Connection c = connect();
                 PreparedStatement ps = c.prepareStatement(
                         "SELECT ?::int, ?::text, ?::bytea, ?::int[], ?::jsonb, ?::timestamptz, ?::int")) {
                OffsetDateTime ts = OffsetDateTime.of(2024, 2, 29, 12, 30, 45, 0, ZoneOffset.UTC);
                PGobject json = new PGobject();
                json.setType("jsonb");
                json.setValue("{\"k\": [1]}");
                ps.setInt(1, 42);
                ps.setString(2, "it's \\");
                ps.setBytes(3, new byte[] {0, 1, (byte) 255});
                ps.setArray(4, c.createArrayOf("int4", new Integer[] {1, null, 3}));
                ps.setObject(5, json);
                ps.setObject(6, ts);
                ps.setNull(7, Types.INTEGER);
                try (ResultSet r = ps.executeQuery()) {
                    r.next();
                    eq(r.getInt(1), 42, "int");
                    eq(r.getString(2), "it's \\", "text");
                    eq(java.util.Arrays.toString(r.getBytes(3)), "[0, 1, -1]", "bytea");
                    eq(java.util.Arrays.toString((Integer[]) r.getArray(4).getArray()), "[1, null, 3]", "int[]");
                    eq(r.getString(5), "{\"k\": [1]}", "jsonb");
                    eq(r.getObject(6, OffsetDateTime.class).toInstant(), ts.toInstant(), "timestamptz");
                    r.getInt(7);
                    check(r.wasNull(), "null");
                }
            }
        });
        run("server_prepared", () -> {
            // prepareThreshold=1: a named server-side statement from the first use.
            try (Connection c = connect("prepareThreshold", "1");
                 PreparedStatement ps = c.prepareStatement("SELECT ?::int * 2")) {
                for (int i = 0; i < 5; i++) {
                    ps.setInt(1, i);
                    try (ResultSet r = ps.executeQuery()) {
                        r.next();
                        eq(r.getInt(1), i * 2, "doubled");
                    }
                }
                check(((Number) one(c, "SELECT count(*) FROM pg_prepared_statements")).intValue() >= 1,
                        "a named statement exists");
            }
        });
        run("batch", () -> {
            try (Connection c = connect("reWriteBatchedInserts", "true")) {
                c.createStatement().execute("CREATE TABLE many (a int, b text)");
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO many VALUES (?, ?)")) {
                    for (int i = 0; i < 100; i++) {
                        ps.setInt(1, i);
                        ps.setString(2, "v" + i);
                        ps.addBatch();
                    }
                    ps.executeBatch();
                }
                eq(one(c, "SELECT sum(a)::int FROM many"), 4950, "sum");
            }
        });
        run("transaction", () -> {
            try (Connection c = connect()) {
                c.createStatement().execute("CREATE TABLE acct (id int)");
                c.setAutoCommit(false);
                c.createStatement().execute("INSERT INTO acct VALUES (1)");
                Savepoint sp = c.setSavepoint();
                c.createStatement().execute("INSERT INTO acct VALUES (2)");
                c.rollback(sp);
                c.commit();
                c.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
                eq(one(c, "SHOW transaction_isolation"), "serializable", "isolation");
                c.rollback();
                c.setAutoCommit(true);
                eq(one(c, "SELECT count(*)::int FROM acct"), 1, "rows");
            }
        });
        run("read_only", () -> {
            try (Connection c = connect()) {
                c.setAutoCommit(false);
                c.setReadOnly(true);
                eq(one(c, "SHOW transaction_read_only"), "on", "read only");
                c.rollback();
            }
        });
        run("copy", () -> {
            try (Connection c = connect()) {
                c.createStatement().execute("CREATE TABLE cp (id int, name text)");
                CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
                StringBuilder sb = new StringBuilder();
                for (int i = 0; i < 100; i++) sb.append(i).append('\t').append("n").append(i).append('\n');
                eq(cm.copyIn("COPY cp FROM STDIN", new StringReader(sb.toString())), 100L, "rows in");
                ByteArrayOutputStream out = new ByteArrayOutputStream();
                eq(cm.copyOut("COPY cp TO STDOUT", out), 100L, "rows out");
            }
        });
        run("large_object", () -> {
            // The large object API uses the FunctionCall message (fastpath).
            try (Connection c = connect()) {
                c.setAutoCommit(false);
                LargeObjectManager lom = c.unwrap(PGConnection.class).getLargeObjectAPI();
                long oid = lom.createLO();
                try (LargeObject lo = lom.open(oid, LargeObjectManager.WRITE)) {
                    lo.write("large object data".getBytes());
                }
                try (LargeObject lo = lom.open(oid, LargeObjectManager.READ)) {
                    eq(new String(lo.read(100)), "large object data", "read back");
                }
                lom.delete(oid);
                c.commit();
            }
        });
        run("listen_notify", () -> {
            PGNotification n = (PGNotification) notifyOnce()[0];
            eq(n.getName() + "/" + n.getParameter(), "compat/hello", "notification");
        });
        run("notify_pid", () -> {
            Object[] got = notifyOnce();
            eq(((PGNotification) got[0]).getPID(), got[1], "notification pid vs the sender's getBackendPID()");
        });
        run("backend_pid", () -> {
            try (Connection c = connect()) {
                eq(c.unwrap(PGConnection.class).getBackendPID(), one(c, "SELECT pg_backend_pid()"),
                        "getBackendPID() vs pg_backend_pid()");
            }
        });
        run("cancel", () -> {
            try (Connection c = connect(); Statement s = c.createStatement()) {
                s.setQueryTimeout(1);
                long started = System.currentTimeMillis();
                try {
                    s.execute("SELECT pg_sleep(10)");
                    throw new AssertionError("not cancelled");
                } catch (SQLException e) {
                    eq(e.getSQLState(), "57014", "query_canceled");
                }
                check(System.currentTimeMillis() - started < 8000, "cancelled promptly");
                eq(one(c, "SELECT 1"), 1, "usable after cancel");
            }
        });
        run("error_recovery", () -> {
            try (Connection c = connect()) {
                try {
                    one(c, "SELECT 1/0");
                    throw new AssertionError("no error");
                } catch (SQLException e) {
                    eq(e.getSQLState(), "22012", "division by zero");
                }
                eq(one(c, "SELECT 2"), 2, "recovered");
            }
        });
        run("metadata", () -> {
            try (Connection c = connect()) {
                c.createStatement().execute("CREATE TABLE meta_t (id int primary key, name text)");
                DatabaseMetaData md = c.getMetaData();
                try (ResultSet r = md.getTables(null, "public", "meta_t", new String[] {"TABLE"})) {
                    check(r.next(), "getTables finds meta_t");
                }
                List<String> cols = new ArrayList<>();
                try (ResultSet r = md.getColumns(null, "public", "meta_t", null)) {
                    while (r.next()) cols.add(r.getString("COLUMN_NAME"));
                }
                eq(cols.toString(), "[id, name]", "getColumns");
                try (ResultSet r = md.getPrimaryKeys(null, "public", "meta_t")) {
                    check(r.next(), "getPrimaryKeys");
                }
            }
        });
        run("set_schema", () -> {
            // Connection.setSchema sends SET SESSION search_path (item 7).
            try (Connection c = connect()) {
                c.createStatement().execute("CREATE SCHEMA app; CREATE TABLE app.things (id int)");
                c.setSchema("app");
                eq(c.getSchema(), "app", "schema");
                eq(one(c, "SELECT count(*)::int FROM things"), 0, "through the path");
            }
        });
        run("current_schema_option", () -> {
            // currentSchema= in the URL: a search_path startup parameter.
            try (Connection c = connect("currentSchema", "public,pg_catalog")) {
                eq(one(c, "SELECT 1"), 1, "connected");
            }
        });
    }

    static Object[] notifyOnce() throws Exception {
        try (Connection listener = connect(); Connection sender = connect()) {
            listener.createStatement().execute("LISTEN compat");
            sender.createStatement().execute("NOTIFY compat, 'hello'");
            PGNotification[] got = listener.unwrap(PGConnection.class).getNotifications(5000);
            check(got != null && got.length > 0, "a notification arrived");
            return new Object[] {got[0], sender.unwrap(PGConnection.class).getBackendPID()};
        }
    }
}
