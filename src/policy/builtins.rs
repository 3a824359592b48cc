//! What pgward knows about PostgreSQL's own functions and commands without
//! asking the catalog: the dangerous ones every role is denied unless it
//! opts in by name, the built-in functions that write or lock although the
//! catalog calls them harmless, and the volatile built-ins that only read.

use super::class::Class;

/// A built-in function or command denied to every role unless the role
/// lists `name` in `allow_dangerous`.
#[derive(Debug, Clone, Copy)]
pub struct Dangerous {
    /// The name a role opts in with.
    pub name: &'static str,
    /// Matches function names starting with `name` (dblink, dblink_exec...).
    pub prefix: bool,
    pub class: Class,
    pub why: &'static str,
}

const fn d(name: &'static str, class: Class, why: &'static str) -> Dangerous {
    Dangerous {
        name,
        prefix: false,
        class,
        why,
    }
}

const fn prefix(name: &'static str, class: Class, why: &'static str) -> Dangerous {
    Dangerous {
        name,
        prefix: true,
        class,
        why,
    }
}

use Class::{Admin, FileOrProgram, Session, Write};

const READS_FILES: &str = "reads files on the database server";
const WRITES_FILES: &str = "writes files on the database server";
const SERVER_CONTROL: &str = "controls the server or other sessions";
const REPLICATION: &str = "changes replication state";

/// Dangerous functions, matched on the function's name in any schema.
pub const DANGEROUS_FUNCTIONS: &[Dangerous] = &[
    d("pg_read_file", FileOrProgram, READS_FILES),
    d("pg_read_file_old", FileOrProgram, READS_FILES),
    d("pg_read_binary_file", FileOrProgram, READS_FILES),
    d("pg_ls_dir", FileOrProgram, READS_FILES),
    d("pg_stat_file", FileOrProgram, READS_FILES),
    prefix("pg_ls_", FileOrProgram, READS_FILES),
    d("pg_current_logfile", FileOrProgram, READS_FILES),
    d("pg_show_all_file_settings", FileOrProgram, READS_FILES),
    d("pg_hba_file_rules", FileOrProgram, READS_FILES),
    d("pg_ident_file_mappings", FileOrProgram, READS_FILES),
    prefix("pg_logdir_ls", FileOrProgram, READS_FILES),
    d("lo_import", FileOrProgram, READS_FILES),
    d("lo_export", FileOrProgram, WRITES_FILES),
    prefix("pg_file_", FileOrProgram, WRITES_FILES),
    d("pg_terminate_backend", Admin, SERVER_CONTROL),
    d("pg_cancel_backend", Admin, SERVER_CONTROL),
    d("pg_reload_conf", Admin, SERVER_CONTROL),
    prefix("pg_rotate_logfile", Admin, SERVER_CONTROL),
    d("pg_switch_wal", Admin, SERVER_CONTROL),
    d("pg_create_restore_point", Admin, SERVER_CONTROL),
    d("pg_promote", Admin, SERVER_CONTROL),
    prefix("pg_backup_", Admin, SERVER_CONTROL),
    d("pg_start_backup", Admin, SERVER_CONTROL),
    d("pg_stop_backup", Admin, SERVER_CONTROL),
    prefix("pg_wal_replay_", Admin, SERVER_CONTROL),
    d("pg_log_backend_memory_contexts", Admin, SERVER_CONTROL),
    prefix("pg_stat_reset", Admin, SERVER_CONTROL),
    d(
        "pg_import_system_collations",
        Admin,
        "writes the system catalog",
    ),
    d(
        "pg_stop_making_pinned_objects",
        Admin,
        "writes the system catalog",
    ),
    d("pg_nextoid", Admin, "writes the system catalog"),
    d(
        "pg_extension_config_dump",
        Admin,
        "writes the system catalog",
    ),
    prefix("binary_upgrade_", Admin, "writes the system catalog"),
    prefix("pg_create_", Admin, REPLICATION),
    prefix("pg_copy_", Admin, REPLICATION),
    d("pg_drop_replication_slot", Admin, REPLICATION),
    d("pg_replication_slot_advance", Admin, REPLICATION),
    prefix("pg_logical_", Admin, REPLICATION),
    prefix("pg_replication_origin_", Admin, REPLICATION),
    prefix(
        "dblink",
        Write,
        "runs statements through a second connection that a ROLLBACK does not undo",
    ),
];

/// Reading a file_fdw foreign table is COPY FROM its program or file,
/// and takes the same opt-in.
pub const FILE_FDW_PROGRAM: Dangerous = d(
    "copy_program",
    FileOrProgram,
    "a read of a file_fdw foreign table with a program (directly or through a view) runs a shell command on the database server",
);
pub const FILE_FDW_FILE: Dangerous = d(
    "copy_file",
    FileOrProgram,
    "a read of a file_fdw foreign table (directly or through a view) reads a file on the database server",
);

/// Dangerous commands (not functions), by the name roles opt in with.
pub const DANGEROUS_COMMANDS: &[Dangerous] = &[
    d(
        "copy_program",
        FileOrProgram,
        "COPY ... PROGRAM runs a shell command on the database server",
    ),
    d(
        "copy_file",
        FileOrProgram,
        "COPY to or from a server file reads or writes files on the database server",
    ),
    d(
        "alter_system",
        Admin,
        "ALTER SYSTEM rewrites the server configuration",
    ),
    d("load", Admin, "LOAD loads a shared library into the server"),
    d(
        "set_role",
        Session,
        "SET ROLE switches to another database role",
    ),
    d(
        "set_session_authorization",
        Session,
        "SET SESSION AUTHORIZATION switches to another database user",
    ),
    d(
        "catalog_write",
        Admin,
        "writes a system catalog directly (a new function, role or privilege that no DDL or GRANT statement shows)",
    ),
    d(
        "server_secrets",
        Admin,
        "shows server settings that may hold passwords or keys (primary_conninfo, archive and restore commands); SHOW or current_setting() of a setting that holds none is allowed",
    ),
];

/// Settings whose values may hold credentials: a replication connection
/// string with its password, shell commands with keys for the archive.
/// PostgreSQL shows them only to superusers (and pg_read_all_settings), so
/// they matter when pgward's upstream user is one.
pub const SECRET_SETTINGS: &[&str] = &[
    "primary_conninfo",
    "archive_command",
    "archive_cleanup_command",
    "restore_command",
    "recovery_end_command",
    "ssl_passphrase_command",
];

/// Whether setting `name` (any case) may hold a secret.
pub fn is_secret_setting(name: &str) -> bool {
    SECRET_SETTINGS.iter().any(|s| name.eq_ignore_ascii_case(s))
}

/// System catalogs that hold credentials: password hashes (an MD5 one
/// logs in as its role), and the passwords of user mappings and
/// subscriptions. PostgreSQL shows them only to superusers, so they matter
/// when pgward connects upstream as one.
pub const DANGEROUS_CATALOGS: &[Dangerous] = &[
    d("pg_authid", Admin, HOLDS_PASSWORDS),
    d("pg_shadow", Admin, HOLDS_PASSWORDS),
    d("pg_user_mapping", Admin, HOLDS_PASSWORDS),
    d("pg_user_mappings", Admin, HOLDS_PASSWORDS),
    d("pg_subscription", Admin, HOLDS_PASSWORDS),
];
const HOLDS_PASSWORDS: &str = "holds password hashes or connection passwords";

/// The credential catalog a relation name names, if any.
pub fn dangerous_catalog(name: &str) -> Option<&'static Dangerous> {
    DANGEROUS_CATALOGS.iter().find(|d| d.name == name)
}

/// Server-file views: reading them reads files.
pub const DANGEROUS_RELATIONS: &[(&str, &str)] = &[
    ("pg_hba_file_rules", "pg_hba_file_rules"),
    ("pg_file_settings", "pg_show_all_file_settings"),
    ("pg_ident_file_mappings", "pg_ident_file_mappings"),
];

/// System views and functions that show table data whatever pgward's
/// table rules say, and what they show: column statistics (most common
/// values, histogram bounds) and other sessions' statement texts, literal
/// values included.
pub const HIDDEN_READS: &[(&str, &str)] = &[
    ("pg_stats", STATISTICS),
    ("pg_stats_ext", STATISTICS),
    ("pg_stats_ext_exprs", STATISTICS),
    ("pg_statistic", STATISTICS),
    ("pg_statistic_ext_data", STATISTICS),
    ("pg_stat_activity", ACTIVITY),
    ("pg_stat_get_activity", ACTIVITY),
    ("pg_stat_get_backend_activity", ACTIVITY),
    ("pg_largeobject", LARGE_OBJECTS),
    ("lo_get", LARGE_OBJECTS),
    ("loread", LARGE_OBJECTS),
];
/// The same, from extensions, which install into any schema.
pub const EXTENSION_HIDDEN_READS: &[(&str, &str)] = &[
    (
        "pg_stat_statements",
        "shows the statements of every session, the literal values of utility statements (passwords in ALTER ROLE, SET values) included",
    ),
    // pageinspect: the relation is named by a string.
    ("get_raw_page", PAGES),
    ("bt_page_items", PAGES),
];
const PAGES: &str = "reads the raw pages of a table or index named as text, values included";
const STATISTICS: &str = "shows values sampled from the columns of every table";
const LARGE_OBJECTS: &str = "reads large objects, which are stored outside the tables rules name";
const ACTIVITY: &str = "shows the statements of other sessions, literal values included";

/// What a view or function of this name shows that table rules cannot
/// check, if anything. `builtin_scope`: the name is unqualified or in
/// pg_catalog, where the system's own live; extensions' are matched in
/// any schema.
pub fn hidden_read(name: &str, builtin_scope: bool) -> Option<&'static str> {
    let system = HIDDEN_READS.iter().filter(|_| builtin_scope);
    system
        .chain(EXTENSION_HIDDEN_READS)
        .find(|(n, _)| *n == name)
        .map(|(_, why)| *why)
}

/// The dangerous entry a function name falls under, if any.
pub fn dangerous_function(name: &str) -> Option<&'static Dangerous> {
    DANGEROUS_FUNCTIONS.iter().find(|d| {
        if d.prefix {
            name.starts_with(d.name)
        } else {
            name == d.name
        }
    })
}

pub fn dangerous_command(name: &str) -> &'static Dangerous {
    DANGEROUS_COMMANDS
        .iter()
        .find(|d| d.name == name)
        .unwrap_or(&DANGEROUS_COMMANDS[0])
}

/// Whether `name` is something a role may list in `allow_dangerous`.
pub fn is_dangerous_name(name: &str) -> bool {
    all_dangerous().any(|d| d.name == name)
}

pub fn dangerous_names() -> Vec<&'static str> {
    all_dangerous().map(|d| d.name).collect()
}

fn all_dangerous() -> impl Iterator<Item = &'static Dangerous> {
    DANGEROUS_FUNCTIONS
        .iter()
        .chain(DANGEROUS_COMMANDS)
        .chain(DANGEROUS_CATALOGS)
}

/// Built-in functions whose effect the catalog's volatility does not show:
/// they write, lock, signal or change settings. Matched in pg_catalog (and
/// unqualified), never as user functions of another schema.
pub fn builtin_effect(name: &str) -> Option<(Class, &'static str)> {
    Some(match name {
        "nextval" | "setval" => (Write, "advances a sequence (not undone by ROLLBACK)"),
        "txid_current" | "pg_current_xact_id" => (
            Write,
            "assigns a transaction id, a write even in a read-only transaction",
        ),
        "lo_create" | "lo_creat" | "lo_from_bytea" | "lo_unlink" | "lo_put" | "lowrite"
        | "lo_truncate" | "lo_truncate64" => (Write, "writes a large object"),
        "pg_notify" => (Write, "sends a notification to other sessions"),
        "set_config" => (Session, "changes a setting"),
        n if n.starts_with("pg_advisory") || n.starts_with("pg_try_advisory") => {
            (Class::Lock, "takes an advisory lock")
        }
        _ => return None,
    })
}

/// Functions that run SQL the client passes as a string, and which of
/// their arguments (by position, for a call with `nargs` arguments) hold
/// that SQL. An empty list: the function builds SQL from table and column
/// names given as text (tablefunc's connectby, xml2's xpath_table), which
/// pgward does not judge. `builtin_scope`: the name is unqualified or in
/// pg_catalog, where the system's own live (query_to_xml, ts_stat, ...);
/// extensions' are matched in any schema (tablefunc and xml2 declare
/// theirs STABLE, so the catalog alone would take them for reads of
/// nothing). PostgreSQL runs all of them read-only (SPI), yet the SQL may
/// read any table and call any function.
pub fn sql_text_args(name: &str, builtin_scope: bool, nargs: usize) -> Option<Vec<usize>> {
    let system = match name {
        "query_to_xml" | "query_to_xmlschema" | "query_to_xml_and_xmlschema" | "ts_stat" => {
            Some(vec![0])
        }
        // ts_rewrite(query, target, substitute) runs nothing.
        "ts_rewrite" if nargs != 3 => Some(vec![nargs.saturating_sub(1)]),
        _ => None,
    };
    let extension = match name {
        // crosstab(source_sql text, category_sql text) runs both; with an
        // integer second argument, only the first.
        "crosstab" if nargs >= 2 => Some(vec![0, 1]),
        "crosstab" | "crosstab2" | "crosstab3" | "crosstab4" => Some(vec![0]),
        "connectby" | "xpath_table" => Some(Vec::new()),
        _ => None,
    };
    system.filter(|_| builtin_scope).or(extension)
}

/// How a function given a relation by name (its first argument, a
/// `regclass` or a text name) uses that relation's table: an index stands
/// for the table it indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelationArg {
    /// It reads the table's rows (or its index's entries).
    pub reads: bool,
    /// It changes the table's rows or its index.
    pub writes: bool,
}

const READS: RelationArg = RelationArg {
    reads: true,
    writes: false,
};
const WRITES: RelationArg = RelationArg {
    reads: false,
    writes: true,
};

/// Functions that take a table or an index by name and read or change
/// the table's rows or its index, though the statement names neither:
/// BRIN summarization scans the table and writes the index (evaluating
/// its expressions), GIN's pending-list cleanup writes the index; and,
/// matched in any schema (extensions install where they are told),
/// amcheck's checks, pg_prewarm, pgstattuple's statistics, pgrowlocks,
/// pg_visibility and pg_freespacemap, which read it, and pg_surgery's
/// `heap_force_kill` / `heap_force_freeze` and pg_visibility's
/// `pg_truncate_visibility_map`, which change it. `builtin_scope`: the
/// name is unqualified or in pg_catalog.
pub fn relation_arg(name: &str, builtin_scope: bool) -> Option<RelationArg> {
    let system = match name {
        "brin_summarize_range" | "brin_summarize_new_values" => Some(RelationArg {
            reads: true,
            writes: true,
        }),
        "brin_desummarize_range" | "gin_clean_pending_list" => Some(WRITES),
        _ => None,
    };
    let extension = match name {
        "bt_index_check"
        | "bt_index_parent_check"
        | "verify_heapam"
        | "pg_prewarm"
        | "pgstattuple"
        | "pgstattuple_approx"
        | "pgstatindex"
        | "pgstatginindex"
        | "pgstathashindex"
        | "pgrowlocks"
        | "pg_visibility"
        | "pg_visibility_map"
        | "pg_visibility_map_summary"
        | "pg_check_frozen"
        | "pg_check_visible"
        | "pg_freespace" => Some(READS),
        "pg_truncate_visibility_map" | "heap_force_kill" | "heap_force_freeze" => Some(WRITES),
        _ => None,
    };
    system.filter(|_| builtin_scope).or(extension)
}

/// Volatile built-ins that only read (clocks, random numbers, sizes,
/// status). Other volatile built-ins are treated as writes.
pub fn harmless_volatile(name: &str) -> bool {
    matches!(
        name,
        "clock_timestamp"
            | "timeofday"
            | "random"
            | "setseed"
            | "gen_random_uuid"
            | "pg_sleep"
            | "pg_sleep_for"
            | "pg_sleep_until"
            | "currval"
            | "lastval"
            | "current_query"
            | "pg_database_size"
            | "pg_relation_size"
            | "pg_table_size"
            | "pg_indexes_size"
            | "pg_total_relation_size"
            | "pg_tablespace_size"
            | "pg_blocking_pids"
            | "pg_safe_snapshot_blocking_pids"
            | "pg_lock_status"
            | "pg_prepared_xact"
            | "pg_is_in_recovery"
            | "pg_jit_available"
            | "pg_notification_queue_usage"
            | "pg_partition_tree"
            | "pg_partition_ancestors"
            | "pg_stat_have_stats"
            | "pg_stat_clear_snapshot"
            | "pg_sequence_last_value"
            | "pg_xact_status"
            | "txid_status"
            | "pg_xact_commit_timestamp"
            | "pg_xact_commit_timestamp_origin"
            | "pg_last_committed_xact"
            | "pg_current_wal_lsn"
            | "pg_current_wal_insert_lsn"
            | "pg_current_wal_flush_lsn"
            | "pg_last_wal_receive_lsn"
            | "pg_last_wal_replay_lsn"
            | "pg_last_xact_replay_timestamp"
            | "pg_is_wal_replay_paused"
            | "pg_get_wal_replay_pause_state"
            | "pg_collation_actual_version"
            | "pg_database_collation_actual_version"
            | "pg_get_backend_memory_contexts"
            | "pg_get_shmem_allocations"
            | "pg_get_wal_resource_managers"
            | "pg_get_multixact_members"
            | "pg_isolation_test_session_is_blocked"
            | "pg_show_replication_origin_status"
            | "pg_export_snapshot"
            | "lo_open"
            | "lo_close"
            | "loread"
            | "lo_get"
            | "lo_lseek"
            | "lo_lseek64"
            | "lo_tell"
            | "lo_tell64"
    ) || name.starts_with("pg_stat_get_xact_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_lookups() {
        assert_eq!(
            dangerous_function("pg_read_file").unwrap().name,
            "pg_read_file"
        );
        assert_eq!(dangerous_function("dblink_exec").unwrap().name, "dblink");
        assert_eq!(dangerous_function("pg_ls_waldir").unwrap().name, "pg_ls_");
        assert!(dangerous_function("lower").is_none());
        assert!(
            dangerous_function("PG_READ_FILE").is_none(),
            "quoted names keep case"
        );
        assert!(is_dangerous_name("copy_program"));
        assert!(is_dangerous_name("pg_terminate_backend"));
        assert!(!is_dangerous_name("pg_terminate"));
        assert_eq!(dangerous_command("load").class, Admin);
        assert_eq!(
            builtin_effect("pg_try_advisory_xact_lock").unwrap().0,
            Class::Lock
        );
        assert!(harmless_volatile("pg_table_size") && !harmless_volatile("pg_switch_wal"));
        assert_eq!(
            relation_arg("brin_summarize_range", true),
            Some(RelationArg {
                reads: true,
                writes: true
            })
        );
        assert_eq!(
            relation_arg("brin_summarize_range", false),
            None,
            "a user function of that name"
        );
        assert_eq!(relation_arg("heap_force_kill", false), Some(WRITES));
        assert_eq!(relation_arg("lower", true), None);
    }
}
