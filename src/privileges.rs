//! The second lock (docs/rules.md, `upstream_user`): a role that may not
//! run everything should reach PostgreSQL as a user PostgreSQL itself
//! refuses what the role may not do, so a statement pgward misclassifies
//! still meets PostgreSQL's permission checks. This asks the catalog, over
//! a control connection, which such roles connect as a superuser (or a
//! member of one, who can `SET ROLE` to it) or as a member of the roles
//! that read, write or run things on the server's host. `pgward serve`
//! logs each finding at start and after each rules reload; `pgward check
//! --config` prints them.

use std::fmt;

use crate::rules::Rules;
use crate::upstream::{Upstream, UpstreamError};

/// Built-in roles whose members reach the server's files and programs
/// (`COPY ... TO/FROM '/file'`, `COPY ... PROGRAM`, `pg_read_file`).
pub const SERVER_FILE_ROLES: [&str; 3] = [
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
];

/// Why an upstream user is more than a role should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The user is not in `pg_roles`: the role's sessions cannot connect.
    Missing,
    Superuser,
    /// A member of a superuser role, which it can `SET ROLE` to.
    MemberOfSuperuser(String),
    /// A member of one of `SERVER_FILE_ROLES`.
    ServerFiles(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Missing => write!(f, "does not exist upstream"),
            Reason::Superuser => write!(f, "is a superuser"),
            Reason::MemberOfSuperuser(r) => {
                write!(
                    f,
                    "is a member of superuser role {r:?} (SET ROLE reaches it)"
                )
            }
            Reason::ServerFiles(r) => write!(f, "is a member of {r}"),
        }
    }
}

/// One role whose upstream user has privileges the role does not need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub role: String,
    /// The PostgreSQL user its sessions log in as.
    pub user: String,
    pub reasons: Vec<Reason>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reasons: Vec<String> = self.reasons.iter().map(Reason::to_string).collect();
        let (role, user) = (&self.role, &self.user);
        if self.reasons == [Reason::Missing] {
            return write!(
                f,
                "role {role:?} connects upstream as PostgreSQL user {user:?}, which does not exist upstream: its sessions cannot start; create the user with only the privileges the role needs, or change the role's upstream_user"
            );
        }
        write!(
            f,
            "role {role:?} does not allow every class, but connects upstream as PostgreSQL user {user:?}, which {}: a statement pgward misclassifies meets no permission check in PostgreSQL; give the role an upstream_user with only the privileges it needs (docs/rules.md, upstream_user)",
            reasons.join(" and ")
        )
    }
}

/// The roles to check, with the user each connects as: every role that
/// does not allow every class, sorted by name.
pub fn roles_to_check(rules: &Rules, default_user: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rules
        .roles
        .values()
        .filter(|r| !r.allows_every_class())
        .map(|r| {
            let user = r.upstream_user.as_deref().unwrap_or(default_user);
            (r.name.clone(), user.to_owned())
        })
        .collect();
    out.sort();
    out
}

/// The catalog query: for each wanted user (names hex-encoded, so no text
/// of the rules is ever spliced into SQL), whether it exists, is a
/// superuser, and which superuser or server-file roles it is a member of.
fn query(users: &[&str]) -> String {
    let hex: Vec<String> = users
        .iter()
        .map(|u| {
            let h: String = u.bytes().map(|b| format!("{b:02x}")).collect();
            format!("'{h}'")
        })
        .collect();
    let file_roles: Vec<String> = SERVER_FILE_ROLES.iter().map(|r| format!("'{r}'")).collect();
    format!(
        "WITH wanted AS (SELECT convert_from(decode(x, 'hex'), 'UTF8') AS name FROM unnest(ARRAY[{}]::text[]) x), \
         users AS (SELECT r.oid, r.rolname, r.rolsuper FROM pg_catalog.pg_roles r JOIN wanted w ON r.rolname::text = w.name) \
         SELECT u.rolname::text, 'exists', NULL FROM users u \
         UNION ALL SELECT u.rolname::text, 'superuser', NULL FROM users u WHERE u.rolsuper \
         UNION ALL SELECT u.rolname::text, CASE WHEN s.rolsuper THEN 'member_of_superuser' ELSE 'server_files' END, s.rolname::text \
           FROM users u JOIN pg_catalog.pg_roles s ON s.oid <> u.oid \
             AND (s.rolsuper OR s.rolname::text IN ({})) \
             AND pg_catalog.pg_has_role(u.oid, s.oid, 'MEMBER') \
         ORDER BY 1, 2, 3",
        hex.join(", "),
        file_roles.join(", ")
    )
}

/// Asks the upstream, as `control` (pgward's own upstream user), about the
/// user of every role that does not allow every class.
pub async fn check(control: &Upstream, rules: &Rules) -> Result<Vec<Finding>, UpstreamError> {
    let roles = roles_to_check(rules, &control.target.user);
    if roles.is_empty() {
        return Ok(Vec::new());
    }
    let mut users: Vec<&str> = roles.iter().map(|(_, u)| u.as_str()).collect();
    users.sort();
    users.dedup();
    let mut conn = control.connect(&control.default_database(), &[]).await?;
    let rows = conn.simple_query(&query(&users)).await;
    conn.close().await;
    let rows = rows?;
    let mut findings = Vec::new();
    for (role, user) in roles {
        let of_user = rows
            .iter()
            .filter(|r| r.first().and_then(|c| c.as_deref()) == Some(user.as_str()));
        let mut exists = false;
        let mut reasons = Vec::new();
        for row in of_user {
            let detail = row.get(2).cloned().flatten().unwrap_or_default();
            match row.get(1).and_then(|c| c.as_deref()) {
                Some("exists") => exists = true,
                Some("superuser") => reasons.push(Reason::Superuser),
                Some("member_of_superuser") => reasons.push(Reason::MemberOfSuperuser(detail)),
                Some("server_files") => reasons.push(Reason::ServerFiles(detail)),
                _ => {}
            }
        }
        if !exists {
            reasons = vec![Reason::Missing];
        } else if reasons.contains(&Reason::Superuser) {
            // A superuser is a member of every role: that says it all.
            reasons = vec![Reason::Superuser];
        }
        if !reasons.is_empty() {
            findings.push(Finding {
                role,
                user,
                reasons,
            });
        }
    }
    Ok(findings)
}

/// Runs `check` and logs each finding as a warning (`pgward serve` and
/// `pgward demo` at start, and after each rules reload); a failure to
/// check is logged too, and serving goes on.
pub async fn warn_at_start(control: Upstream, rules: std::sync::Arc<Rules>) {
    match check(&control, &rules).await {
        Ok(findings) => {
            for f in findings {
                tracing::warn!(role = %f.role, upstream_user = %f.user, "{f}");
            }
        }
        Err(e) => tracing::warn!(
            "could not check the privileges of the roles' upstream users as {:?}: {e}",
            control.target.user
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_roles_that_do_not_allow_everything_are_checked() {
        let mut rules = Rules::default();
        rules
            .add_file(
                std::path::Path::new("r.toml"),
                "[role.ro]\nallow = [\"read\"]\nupstream_user = \"ro_user\"\n[role.plain]\nallow = [\"read\", \"write\"]\n[role.all]\nallow = [\"*\"]\n",
            )
            .unwrap();
        assert_eq!(
            roles_to_check(&rules, "pgward"),
            vec![
                ("plain".to_owned(), "pgward".to_owned()),
                ("ro".to_owned(), "ro_user".to_owned())
            ]
        );
    }

    #[test]
    fn user_names_reach_the_query_only_as_hex() {
        let q = query(&["x'); DROP TABLE t; --", "é"]);
        assert!(!q.contains("DROP"), "{q}");
        assert!(q.contains("'7827293b2044524f50"), "{q}");
        assert!(q.contains("'c3a9'"), "{q}");
    }

    #[test]
    fn findings_say_role_user_why_and_fix() {
        let f = Finding {
            role: "analyst".into(),
            user: "postgres".into(),
            reasons: vec![
                Reason::Superuser,
                Reason::ServerFiles("pg_read_server_files".into()),
            ],
        };
        let text = f.to_string();
        for part in [
            "role \"analyst\"",
            "\"postgres\"",
            "is a superuser and is a member of pg_read_server_files",
            "upstream_user",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }
}
