//! Which session settings a role may change, and to what.
//!
//! Read-only protections live in settings (`default_transaction_read_only`,
//! `transaction_read_only`), and so do the lexer's assumptions
//! (`standard_conforming_strings`, which pgward follows but a role must
//! list to turn off), the built-ins
//! pgward takes names for (`search_path` keeps pg_catalog first unless the
//! role lists it) and the
//! identity upstream (`role`). Every way to change
//! them (SET, SET LOCAL, SET TRANSACTION, BEGIN READ WRITE, SET SESSION
//! CHARACTERISTICS, set_config(), startup parameters and `options`) ends
//! up here as a `SettingChange`.

use super::class::Class;
use super::classify::parse_pg_bool;
use super::role::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    Set,
    /// RESET, SET ... TO DEFAULT: back to the value pgward connected with.
    Reset,
    /// set_config() with a name or value that is not a constant.
    Computed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingChange {
    pub name: String,
    /// None for DEFAULT or a value that is not a constant.
    pub value: Option<String>,
    pub local: bool,
    pub kind: ChangeKind,
}

impl SettingChange {
    pub fn set(name: impl Into<String>, value: Option<String>, local: bool) -> SettingChange {
        SettingChange {
            name: name.into(),
            value,
            local,
            kind: ChangeKind::Set,
        }
    }

    pub fn reset(name: &str) -> SettingChange {
        SettingChange {
            name: name.to_owned(),
            value: None,
            local: false,
            kind: ChangeKind::Reset,
        }
    }

    pub fn computed() -> SettingChange {
        SettingChange {
            name: "?".into(),
            value: None,
            local: false,
            kind: ChangeKind::Computed,
        }
    }
}

/// Settings any role may change: formatting, timeouts, planner knobs, and
/// what pg_dump and pg_restore set: `synchronize_seqscans` (where a scan
/// starts), `row_security = off` (a read that policies would filter fails
/// instead: no bypass), `restrict_nonsystem_relation_kind` (only narrows
/// what queries may touch), `check_function_bodies` (whether CREATE
/// FUNCTION validates its body; pgward judges bodies from the catalog
/// whatever it says), `default_tablespace` and `default_table_access_method`
/// (where and how new tables are stored; PostgreSQL checks the
/// privileges).
fn harmless(name: &str) -> bool {
    matches!(
        name,
        "application_name"
            | "client_min_messages"
            | "datestyle"
            | "intervalstyle"
            | "timezone"
            | "extra_float_digits"
            | "bytea_output"
            | "xmloption"
            | "xmlbinary"
            | "statement_timeout"
            | "lock_timeout"
            | "idle_in_transaction_session_timeout"
            | "idle_session_timeout"
            | "transaction_timeout"
            | "transaction_isolation"
            | "transaction_deferrable"
            | "default_transaction_isolation"
            | "default_transaction_deferrable"
            | "lc_monetary"
            | "lc_numeric"
            | "lc_time"
            | "work_mem"
            | "hash_mem_multiplier"
            | "temp_buffers"
            | "jit"
            | "plan_cache_mode"
            | "cursor_tuple_fraction"
            | "from_collapse_limit"
            | "join_collapse_limit"
            | "random_page_cost"
            | "seq_page_cost"
            | "effective_cache_size"
            | "max_parallel_workers_per_gather"
            | "default_text_search_config"
            | "gin_fuzzy_search_limit"
            | "synchronous_commit"
            | "escape_string_warning"
            | "array_nulls"
            | "quote_all_identifiers"
            | "row_security"
            | "synchronize_seqscans"
            | "restrict_nonsystem_relation_kind"
            | "check_function_bodies"
            | "default_tablespace"
            | "default_table_access_method"
    ) || name.starts_with("enable_")
        || name.starts_with("geqo")
}

/// Why a change is refused: the reason, and the rule that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub why: String,
    pub rule: String,
}

fn refuse(why: impl Into<String>, rule: impl Into<String>) -> Result<(), Refusal> {
    Err(Refusal {
        why: why.into(),
        rule: rule.into(),
    })
}

/// Whether `role` may make `change`.
pub fn check(change: &SettingChange, role: &Role) -> Result<(), Refusal> {
    let name = canonical_name(&change.name);
    let value = change.value.as_deref();
    match change.kind {
        ChangeKind::Computed => {
            return refuse(
                "set_config() with a setting name or value that is not a constant",
                "built-in: settings must be readable to be judged",
            )
        }
        // transaction_read_only has no startup form: RESET (and SET ... TO
        // DEFAULT) lands on its boot value, off, which a block that has
        // not yet taken a snapshot accepts. Judge it as that SET.
        ChangeKind::Reset if name == "transaction_read_only" => {
            return check(
                &SettingChange::set(name, Some("off".into()), change.local),
                role,
            )
        }
        // Any other reset returns to what pgward connected with: never a
        // value the client chose, since every SET of a protected setting
        // is refused (startup parameters included).
        ChangeKind::Reset => return Ok(()),
        ChangeKind::Set => {}
    }
    // What the role's session settings set is a protection the client
    // does not get to undo (a statement_timeout, say), unless the role
    // names the setting in `settings`.
    // (`role` has its own rule below: SET ROLE is dangerous anyway.)
    let pinned = role
        .session
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str());
    if let Some(pinned) = pinned.filter(|_| name != "role") {
        let unpinned = role
            .settings
            .iter()
            .any(|p| p.text != "*" && p.matches(name));
        if !unpinned && !value.is_some_and(|v| same_value(name, v, pinned)) {
            return refuse(
                format!("{name} is set to {pinned} for this role's sessions"),
                format!(
                    "role {}: session {name} (list \"{name}\" in settings to let clients change it)",
                    role.name
                ),
            );
        }
    }
    match name {
        // A placeholder the server stores and ignores: why the statements
        // that follow are run, shown to approvers (`docs/approval.md`).
        n if n.eq_ignore_ascii_case(REASON) => Ok(()),
        "role" => {
            // SET ROLE NONE returns to the login user: harmless unless the
            // role's session settings connect as another role, which it
            // would drop (RESET ROLE returns to that one instead).
            // PostgreSQL compares with "none" exactly: SET ROLE 'NONE' (or
            // "NONE") switches to a role of that name.
            let none = value == Some("none");
            match pinned {
                Some(connected_as) if none => dangerous(role, "set_role").map_err(|r| Refusal {
                    why: format!(
                        "SET ROLE NONE would drop the role {connected_as} pgward connected as, for the login user"
                    ),
                    ..r
                }),
                _ if none => Ok(()),
                _ => dangerous(role, "set_role"),
            }
        }
        "session_authorization" => dangerous(role, "set_session_authorization"),
        "transaction_read_only" | "default_transaction_read_only" => {
            match value.map(parse_pg_bool) {
                None | Some(Some(true)) => Ok(()),
                _ if role.allow.contains(Class::Write) => Ok(()),
                _ => refuse(
                    format!(
                        "{name} = {} would switch off read-only protection",
                        value.unwrap_or("?")
                    ),
                    format!(
                        "role {}: only roles that allow class write may leave read-only mode",
                        role.name
                    ),
                ),
            }
        }
        // pgward parses a session's SQL with the setting the server
        // reports for it (and its shape cache follows): off is a legacy
        // mode a role opts into by listing the setting (as
        // `backslash_quote`, which only decides whether `\'` is an error).
        "standard_conforming_strings" => match value.and_then(parse_pg_bool) {
            Some(true) => Ok(()),
            _ => listed(role, name),
        },
        // pgward reads the session's text in its encoding, as the server
        // does, following what the server reports; what it cannot decode
        // faithfully, it refuses.
        "client_encoding" => Ok(()),
        // Open to every role: pgward judges an unqualified name (function,
        // relation, type, operator) by every object of that name in any
        // schema, whatever the search_path, so no path hides a call or a
        // table from it. A path that puts a schema ahead of pg_catalog
        // (user functions then shadow built-ins) takes a role that lists
        // search_path in `settings` ("*" does): pgjdbc, pg8000 and some
        // ORMs set one.
        "search_path" => match search_path_schemas(value.unwrap_or(""))
            .iter()
            .position(|s| s == "pg_catalog")
        {
            Some(pos) if pos > 0 && !role.settings.iter().any(|p| p.matches(name)) => refuse(
                "a search_path with schemas before pg_catalog lets user functions shadow built-ins",
                format!(
                    "role {}: settings (add \"search_path\" to allow schemas before pg_catalog)",
                    role.name
                ),
            ),
            _ => Ok(()),
        },
        _ if harmless(name) => Ok(()),
        _ => listed(role, name),
    }
}

/// The schema names of a search_path value, read as PostgreSQL reads a
/// list of identifiers: split at commas outside double quotes, quoted
/// names kept as written (`""` is a quote), others trimmed and lowercased
/// (`'x, PG_CATALOG'` puts pg_catalog second). A SET's arguments arrive
/// joined with commas, so a name holding a comma or capitals can only be
/// taken for more names or for pg_catalog: refused, never wrongly allowed.
fn search_path_schemas(value: &str) -> Vec<String> {
    let mut schemas = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut name = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                if c == '"' && chars.next_if_eq(&'"').is_none() {
                    break;
                }
                name.push(c);
            }
            while chars.next_if(|c| *c != ',').is_some() {}
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                name.push(c.to_ascii_lowercase());
            }
            name.truncate(name.trim_end().len());
        }
        schemas.push(name);
        if chars.next().is_none() {
            return schemas;
        }
    }
}

/// PostgreSQL 15's boolean settings, sorted (`postgres --describe-config`
/// plus the ones it does not list).
const BOOL_SETTINGS: &[&str] = &[
    "allow_system_table_mods",
    "array_nulls",
    "autovacuum",
    "bonjour",
    "check_function_bodies",
    "data_sync_retry",
    "db_user_namespace",
    "debug_pretty_print",
    "debug_print_parse",
    "debug_print_plan",
    "debug_print_rewritten",
    "default_transaction_deferrable",
    "default_transaction_read_only",
    "enable_async_append",
    "enable_bitmapscan",
    "enable_gathermerge",
    "enable_hashagg",
    "enable_hashjoin",
    "enable_incremental_sort",
    "enable_indexonlyscan",
    "enable_indexscan",
    "enable_material",
    "enable_memoize",
    "enable_mergejoin",
    "enable_nestloop",
    "enable_parallel_append",
    "enable_parallel_hash",
    "enable_partition_pruning",
    "enable_partitionwise_aggregate",
    "enable_partitionwise_join",
    "enable_seqscan",
    "enable_sort",
    "enable_tidscan",
    "escape_string_warning",
    "exit_on_error",
    "fsync",
    "full_page_writes",
    "geqo",
    "hot_standby",
    "hot_standby_feedback",
    "ignore_checksum_failure",
    "ignore_invalid_pages",
    "ignore_system_indexes",
    "jit",
    "jit_debugging_support",
    "jit_dump_bitcode",
    "jit_expressions",
    "jit_profiling_support",
    "jit_tuple_deforming",
    "krb_caseins_users",
    "lo_compat_privileges",
    "log_checkpoints",
    "log_connections",
    "log_disconnections",
    "log_duration",
    "log_executor_stats",
    "log_hostname",
    "log_lock_waits",
    "log_parser_stats",
    "log_planner_stats",
    "log_recovery_conflict_waits",
    "log_replication_commands",
    "log_statement_stats",
    "log_truncate_on_rotation",
    "logging_collector",
    "parallel_leader_participation",
    "quote_all_identifiers",
    "recovery_target_inclusive",
    "restart_after_crash",
    "row_security",
    "ssl",
    "ssl_passphrase_command_supports_reload",
    "ssl_prefer_server_ciphers",
    "standard_conforming_strings",
    "synchronize_seqscans",
    "syslog_sequence_numbers",
    "syslog_split_messages",
    "trace_notify",
    "trace_sort",
    "track_activities",
    "track_commit_timestamp",
    "track_counts",
    "track_io_timing",
    "track_wal_io_timing",
    "transaction_deferrable",
    "transaction_read_only",
    "transform_null_equals",
    "update_process_title",
    "wal_init_zero",
    "wal_log_hints",
    "wal_receiver_create_temp_slot",
    "wal_recycle",
    "zero_damaged_pages",
];

/// PostgreSQL 15's enum settings, sorted. Their values are matched without
/// regard to case, and many take on/off/true/false/yes/no/1/0 as aliases.
const ENUM_SETTINGS: &[&str] = &[
    "archive_mode",
    "backslash_quote",
    "bytea_output",
    "client_min_messages",
    "compute_query_id",
    "constraint_exclusion",
    "default_toast_compression",
    "default_transaction_isolation",
    "dynamic_shared_memory_type",
    "force_parallel_mode",
    "huge_pages",
    "intervalstyle",
    "log_error_verbosity",
    "log_min_error_statement",
    "log_min_messages",
    "log_statement",
    "password_encryption",
    "plan_cache_mode",
    "recovery_init_sync_method",
    "recovery_prefetch",
    "recovery_target_action",
    "session_replication_role",
    "shared_memory_type",
    "ssl_max_protocol_version",
    "ssl_min_protocol_version",
    "stats_fetch_consistency",
    "synchronous_commit",
    "syslog_facility",
    "trace_recovery_messages",
    "track_functions",
    "transaction_isolation",
    "wal_compression",
    "wal_level",
    "wal_sync_method",
    "xmlbinary",
    "xmloption",
];

/// Whether PostgreSQL takes `a` and `b` as the same value of setting
/// `name`. A client that sets a pinned setting to the value it already has
/// (`SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY` sets
/// default_transaction_read_only to 1, not "on") changes nothing. Other
/// spellings (units, case of strings) count as different: refused, never
/// wrongly allowed.
fn same_value(name: &str, a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let name = name.to_ascii_lowercase();
    let same_bool = || matches!((parse_pg_bool(a), parse_pg_bool(b)), (Some(x), Some(y)) if x == y);
    if BOOL_SETTINGS.binary_search(&name.as_str()).is_ok() {
        return same_bool();
    }
    ENUM_SETTINGS.binary_search(&name.as_str()).is_ok()
        && (a.eq_ignore_ascii_case(b) || same_bool())
}

/// The setting PostgreSQL changes for this name: it still takes two old
/// names for their successors (`SET sort_mem` sets work_mem).
/// The setting a client gives its reason for statements held for approval.
pub const REASON: &str = "pgward.reason";

/// The reason a `/* reason: ... */` or `-- reason: ...` comment at the
/// start of `sql` gives, if any.
pub fn comment_reason(sql: &str) -> Option<String> {
    let s = sql.trim_start();
    let inner = if let Some(rest) = s.strip_prefix("/*") {
        &rest[..rest.find("*/")?]
    } else {
        let rest = s.strip_prefix("--")?;
        &rest[..rest.find('\n').unwrap_or(rest.len())]
    };
    let inner = inner.trim();
    let head = inner.get(..7)?;
    if !head.eq_ignore_ascii_case("reason:") {
        return None;
    }
    Some(inner[7..].trim().to_owned()).filter(|r| !r.is_empty())
}

/// What the statements of one message leave `pgward.reason` at, if they
/// set or reset it: `Some(None)` for a reset.
pub fn reason_change(changes: &[SettingChange]) -> Option<Option<String>> {
    changes
        .iter()
        .rev()
        .find(|c| c.name.eq_ignore_ascii_case(REASON))
        .map(|c| match c.kind {
            ChangeKind::Set => c.value.clone(),
            ChangeKind::Reset | ChangeKind::Computed => None,
        })
}

fn canonical_name(name: &str) -> &str {
    if name.eq_ignore_ascii_case("sort_mem") {
        "work_mem"
    } else if name.eq_ignore_ascii_case("vacuum_mem") {
        "maintenance_work_mem"
    } else {
        name
    }
}

fn listed(role: &Role, name: &str) -> Result<(), Refusal> {
    if role.settings.iter().any(|p| p.matches(name)) {
        Ok(())
    } else {
        refuse(
            format!("setting {name} may not be changed"),
            format!("role {}: settings (add \"{name}\" to allow it)", role.name),
        )
    }
}

fn dangerous(role: &Role, what: &str) -> Result<(), Refusal> {
    if role.allow_dangerous.iter().any(|d| d == what) {
        Ok(())
    } else {
        refuse(
            super::builtins::dangerous_command(what).why,
            format!(
                "built-in dangerous list: {what} (role {} does not list it in allow_dangerous)",
                role.name
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reasons_come_from_a_leading_comment() {
        assert_eq!(
            comment_reason("  /* reason: INC-1234 backfill */ UPDATE t SET a = 1").as_deref(),
            Some("INC-1234 backfill")
        );
        assert_eq!(
            comment_reason("-- Reason: hotfix\nDELETE FROM t").as_deref(),
            Some("hotfix")
        );
        assert_eq!(comment_reason("/* why: x */ SELECT 1"), None);
        assert_eq!(comment_reason("/* reason: */ SELECT 1"), None);
        assert_eq!(comment_reason("SELECT 1 /* reason: late */"), None);
        assert_eq!(comment_reason("/* reason: unterminated"), None);
        assert_eq!(comment_reason("/* reasón: é */"), None);
        let set = |v: &str| SettingChange::set("PGWARD.reason", Some(v.into()), false);
        assert_eq!(reason_change(&[set("a"), set("b")]), Some(Some("b".into())));
        assert_eq!(
            reason_change(&[SettingChange::set("work_mem", Some("1MB".into()), false)]),
            None
        );
    }

    use super::*;
    use crate::policy::class::ClassSet;

    fn role(allow: &[Class]) -> Role {
        Role {
            name: "r".into(),
            allow: allow.iter().copied().collect::<ClassSet>(),
            ..Role::default()
        }
    }

    fn set(name: &str, value: &str) -> SettingChange {
        SettingChange::set(name, Some(value.into()), false)
    }

    #[test]
    fn read_only_switches() {
        let reader = role(&[Class::Read]);
        let writer = role(&[Class::Read, Class::Write]);
        for v in ["off", "of", "false", "f", "no", "0", "garbage"] {
            assert!(
                check(&set("default_transaction_read_only", v), &reader).is_err(),
                "{v}"
            );
            assert!(
                check(&set("transaction_read_only", v), &writer).is_ok(),
                "{v}"
            );
        }
        assert!(check(&set("transaction_read_only", "on"), &reader).is_ok());
        assert!(check(&SettingChange::reset("all"), &reader).is_ok());
        assert!(check(&SettingChange::computed(), &writer).is_err());
    }

    #[test]
    fn lexer_and_identity_settings() {
        let mut dba = role(&[Class::Read, Class::Write]);
        assert!(check(&set("standard_conforming_strings", "off"), &dba).is_err());
        assert!(check(&set("standard_conforming_strings", "on"), &dba).is_ok());
        assert!(check(&set("backslash_quote", "on"), &dba).is_err());
        // A role that lists them may read strings with escapes.
        let mut legacy = dba.clone();
        legacy.settings.push(crate::policy::role::Pattern::new("*"));
        for (name, value) in [
            ("standard_conforming_strings", "off"),
            ("standard_conforming_strings", "of"),
            ("backslash_quote", "on"),
            ("escape_string_warning", "off"),
        ] {
            assert!(check(&set(name, value), &legacy).is_ok(), "{name}");
        }
        // pgward follows every encoding the server reports.
        for enc in ["SJIS", "Shift_JIS", "UTF8", "LATIN1", "BIG5", "GB18030"] {
            assert!(check(&set("client_encoding", enc), &dba).is_ok(), "{enc}");
        }
        assert!(check(&set("role", "postgres"), &dba).is_err());
        assert!(check(&set("role", "none"), &dba).is_ok());
        assert!(check(&set("role", "NONE"), &dba).is_err());
        // Connected as a role (a startup setting): NONE would leave it.
        let mut ro = role(&[Class::Read]);
        ro.session.push(("role".into(), "readers".into()));
        let refusal = check(&set("role", "none"), &ro).unwrap_err();
        assert!(refusal.why.contains("readers"), "{}", refusal.why);
        assert!(check(&SettingChange::reset("role"), &ro).is_ok());
        dba.allow_dangerous.push("set_role".into());
        assert!(check(&set("role", "postgres"), &dba).is_ok());
        assert!(check(&set("session_authorization", "x"), &dba).is_err());
    }

    #[test]
    fn listed_and_harmless_settings() {
        let mut r = role(&[Class::Read]);
        assert!(check(&set("statement_timeout", "5s"), &r).is_ok());
        assert!(check(&set("enable_seqscan", "off"), &r).is_ok());
        assert!(check(&set("session_replication_role", "replica"), &r).is_err());
        assert!(check(&set("app.tenant", "7"), &r).is_err());
        r.settings.push(crate::policy::role::Pattern::new("app.*"));
        assert!(check(&set("app.tenant", "7"), &r).is_ok());
    }

    /// Any role may set search_path (ORMs do on connect), but only a role
    /// that lists it may put a schema ahead of pg_catalog, however the
    /// list is spelled.
    #[test]
    fn search_path_keeps_pg_catalog_first() {
        let r = role(&[Class::Read]);
        for ok in [
            "public",
            "\"$user\", public",
            "pg_catalog, public",
            " PG_CATALOG ,evil",
            "\"pg_catalog\",evil",
            "pg_temp, public",
            "",
        ] {
            assert!(check(&set("search_path", ok), &r).is_ok(), "{ok}");
        }
        let mut listed = role(&[Class::Read]);
        listed
            .settings
            .push(crate::policy::role::Pattern::new("search_path"));
        let mut every = role(&[Class::Read]);
        every.settings.push(crate::policy::role::Pattern::new("*"));
        let mut other = role(&[Class::Read]);
        other
            .settings
            .push(crate::policy::role::Pattern::new("app.*"));
        for shadowing in [
            "public, pg_catalog",
            "evil,PG_CATALOG",
            "evil, \"pg_catalog\"",
            "\"e,\"\"vil\" , pg_catalog",
            "pg_temp, pg_catalog",
            ", pg_catalog",
        ] {
            for r in [&r, &other] {
                let e = check(&set("search_path", shadowing), r).unwrap_err();
                assert!(
                    e.why.contains("before pg_catalog"),
                    "{shadowing}: {}",
                    e.why
                );
                assert!(e.rule.contains("add \"search_path\""), "{}", e.rule);
            }
            // A role that lists it, or every setting, may.
            assert!(check(&set("search_path", shadowing), &listed).is_ok());
            assert!(check(&set("search_path", shadowing), &every).is_ok());
        }
        // What the role's session pins stays pinned ("*" does not count).
        every
            .session
            .push(("search_path".into(), "pg_catalog, public".into()));
        assert!(check(&set("search_path", "public, pg_catalog"), &every).is_err());
        listed
            .session
            .push(("search_path".into(), "pg_catalog, public".into()));
        assert!(check(&set("search_path", "public, pg_catalog"), &listed).is_ok());
        assert_eq!(
            search_path_schemas(" A , \"B \"\"c\"\"\" ,,\"D,E\""),
            ["a", "B \"c\"", "", "D,E"]
        );
    }

    #[test]
    fn setting_type_lists_are_sorted_for_binary_search() {
        for list in [BOOL_SETTINGS, ENUM_SETTINGS] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
        }
    }

    /// A setting the role's session sets is a protection: clients may not
    /// change it, unless the role names it in `settings` ("*" does not).
    #[test]
    fn reset_of_transaction_read_only_is_switching_it_off() {
        let ro = role(&[Class::Read]);
        let writer = role(&[Class::Read, Class::Write]);
        assert!(check(&SettingChange::reset("transaction_read_only"), &writer).is_ok());
        for change in [
            SettingChange::reset("transaction_read_only"),
            SettingChange {
                local: true,
                ..SettingChange::reset("transaction_read_only")
            },
        ] {
            assert!(check(&change, &ro).is_err(), "{change:?}");
        }
        // Other resets land on what pgward connected with.
        assert!(check(&SettingChange::reset("default_transaction_read_only"), &ro).is_ok());
    }

    #[test]
    fn session_settings_are_pinned() {
        let mut r = role(&[Class::Read, Class::Write]);
        r.session.push(("statement_timeout".into(), "30s".into()));
        r.session
            .push(("default_transaction_read_only".into(), "on".into()));
        let e = check(&set("statement_timeout", "0"), &r).unwrap_err();
        assert!(e.why.contains("set to 30s"), "{}", e.why);
        assert!(check(&set("STATEMENT_TIMEOUT", "0"), &r).is_err());
        assert!(check(&set("statement_timeout", "30s"), &r).is_ok());
        assert!(check(&SettingChange::reset("statement_timeout"), &r).is_ok());
        // A role that may write could otherwise leave read-only mode.
        assert!(check(&set("default_transaction_read_only", "off"), &r).is_err());
        assert!(check(&set("lock_timeout", "0"), &r).is_ok());
        // The same value in other words is no change; units are not
        // understood, so another spelling of 30s stays refused.
        for same in ["1", "true", "ON", "yes", "t"] {
            assert!(check(&set("default_transaction_read_only", same), &r).is_ok());
        }
        for other in ["0", "of", "false", "no", "o", "maybe"] {
            assert!(check(&set("default_transaction_read_only", other), &r).is_err());
        }
        assert!(check(&set("statement_timeout", "30000"), &r).is_err());
        // An old name for a pinned setting is that setting.
        r.session.push(("work_mem".into(), "64MB".into()));
        r.settings.push(crate::policy::role::Pattern::new("*"));
        assert!(check(&set("SORT_MEM", "1GB"), &r).is_err());
        assert!(check(&set("sort_mem", "64MB"), &r).is_ok());
        r.settings.pop();
        // Enum values ignore case and take boolean aliases; strings do not.
        r.session.push(("synchronous_commit".into(), "on".into()));
        r.session.push(("application_name".into(), "on".into()));
        assert!(check(&set("synchronous_commit", "ON"), &r).is_ok());
        assert!(check(&set("synchronous_commit", "true"), &r).is_ok());
        assert!(check(&set("synchronous_commit", "local"), &r).is_err());
        assert!(check(&set("application_name", "ON"), &r).is_err());
        assert!(check(&set("application_name", "true"), &r).is_err());
        r.settings.push(crate::policy::role::Pattern::new("*"));
        assert!(check(&set("statement_timeout", "0"), &r).is_err());
        r.settings
            .push(crate::policy::role::Pattern::new("statement_timeout"));
        assert!(check(&set("statement_timeout", "0"), &r).is_ok());
    }
}

/// Settings a client asks for at startup, with pgward's own `pgward.role`
/// taken out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StartupSettings {
    /// Settings to pass upstream (each one judged like a SET).
    pub settings: Vec<(String, String)>,
    /// The role the client asks to run as.
    pub role: Option<String>,
}

/// Reads the startup parameters: direct settings and the `-c name=value`
/// / `--name=value` switches inside `options` (split as PostgreSQL does:
/// on whitespace, with backslash escapes). Other switches are refused.
pub fn from_startup(params: &[(String, String)]) -> Result<StartupSettings, String> {
    let mut out = StartupSettings::default();
    let add = |name: &str, value: &str, out: &mut StartupSettings| {
        let name = name.to_ascii_lowercase();
        if name == "pgward.role" {
            out.role = Some(value.to_owned());
        } else {
            out.settings.retain(|(n, _)| *n != name);
            out.settings.push((name, value.to_owned()));
        }
    };
    for (key, value) in params {
        match key.as_str() {
            "user" | "database" | "replication" => {}
            k if k.starts_with("_pq_.") => {}
            "options" => {
                let words = split_options(value);
                let mut i = 0;
                while i < words.len() {
                    let w = &words[i];
                    let setting = if w == "-c" {
                        i += 1;
                        words
                            .get(i)
                            .cloned()
                            .ok_or("options: -c needs name=value")?
                    } else if let Some(rest) = w.strip_prefix("-c") {
                        rest.to_owned()
                    } else if let Some(rest) = w.strip_prefix("--") {
                        rest.to_owned()
                    } else {
                        return Err(format!(
                            "options: pgward accepts only -c name=value settings, not {w:?}"
                        ));
                    };
                    let (name, value) = setting
                        .split_once('=')
                        .ok_or_else(|| format!("options: {setting:?} is not name=value"))?;
                    add(&name.replace('-', "_"), value, &mut out);
                    i += 1;
                }
            }
            _ => add(key, value, &mut out),
        }
    }
    Ok(out)
}

fn split_options(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                cur.push(next);
            }
        } else if c.is_whitespace() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod startup_tests {
    use super::*;

    fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_are_split_like_postgres() {
        let s = from_startup(&params(&[
            ("user", "u"),
            ("application_name", "x"),
            (
                "options",
                "-c default_transaction_read_only=off --search-path=a\\ b -cpgward.role=dba",
            ),
        ]))
        .unwrap();
        assert_eq!(s.role.as_deref(), Some("dba"));
        assert_eq!(
            s.settings,
            vec![
                ("application_name".to_string(), "x".to_string()),
                (
                    "default_transaction_read_only".to_string(),
                    "off".to_string()
                ),
                ("search_path".to_string(), "a b".to_string()),
            ]
        );
        assert!(from_startup(&params(&[("options", "-D /tmp")])).is_err());
        assert!(from_startup(&params(&[("options", "-c")])).is_err());
        assert!(from_startup(&params(&[("options", "-c novalue")])).is_err());
    }
}
