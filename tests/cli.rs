//! The `pgward check` and `pgward explain` commands, as a user runs them.

use std::process::Command;

fn pgward(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgward"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run pgward");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_example_rules_and_names_file_and_line_of_a_mistake() {
    let (ok, out, err) = pgward(&["check", "rules"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("OK") && out.contains("agent, analyst, app, dba"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("roles.toml"),
        "# a role\n[role.r]\nallow = [\"read\",\n  \"wirte\"]\n",
    )
    .unwrap();
    let (ok, _, err) = pgward(&["check", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("roles.toml:4") && err.contains("\"wirte\"") && err.contains("write"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("roles.toml"),
        "[role.r]\nallow = [\"read\"]\nallow_dangerous = [\"pg_read_fil\"]\n",
    )
    .unwrap();
    let (ok, _, err) = pgward(&["check", dir.path().to_str().unwrap()]);
    assert!(
        !ok && err.contains("roles.toml:3") && err.contains("pg_read_file"),
        "{err}"
    );

    // An identity holding a role nobody declared: no role, no access.
    std::fs::write(
        dir.path().join("roles.toml"),
        "[role.r]\nallow = [\"read\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("people.toml"),
        format!(
            "[[identity]]\nname = \"x\"\nscram = \"{}\"\nroles = [\"r\", \"ghost\"]\n",
            pgward::auth::scram::Verifier::generate("pw", 4096)
        ),
    )
    .unwrap();
    let (ok, _, err) = pgward(&["check", dir.path().to_str().unwrap()]);
    assert!(
        !ok && err.contains("people.toml:4") && err.contains("ghost"),
        "{err}"
    );
}

#[test]
fn explain_prints_classes_decision_and_rule() {
    let (ok, out, err) = pgward(&[
        "explain",
        "--role",
        "agent",
        "SELECT * FROM orders; WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d; SELECT pg_read_file('/etc/passwd')",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("statement 1: SELECT * FROM orders") && out.contains("ALLOW for role agent"),
        "{out}"
    );
    assert!(
        out.contains("NEEDS APPROVAL for role agent (class write: DELETE modifies data)"),
        "{out}"
    );
    assert!(
        out.contains("DENY for role agent (class file_or_program"),
        "{out}"
    );
    assert!(
        out.contains("rule:       built-in dangerous list: pg_read_file"),
        "{out}"
    );
    let (ok, _, err) = pgward(&["explain", "--role", "nobody", "SELECT 1"]);
    assert!(!ok && err.contains("agent, analyst, app, dba"), "{err}");
}

#[test]
fn a_config_with_the_removed_relay_keys_loads_with_a_warning_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgward.toml");
    std::fs::write(
        &config,
        "[server]\nrelay_threads = true\npin_relay_threads = false\n\
         [upstream]\nurl = \"postgres://nobody@127.0.0.1:1/db\"\nconnect_timeout_secs = 1\n",
    )
    .unwrap();
    // The rules pass; the upstream check then fails (nothing listens):
    // what matters is that the config loaded, and what was said about it.
    let (_, out, err) = pgward(&["check", "rules", "--config", config.to_str().unwrap()]);
    assert!(out.contains("OK"), "{out}\n{err}");
    for key in ["server.relay_threads", "server.pin_relay_threads"] {
        assert!(
            err.contains(&format!("{key} is no longer used and is ignored")),
            "{err}"
        );
    }
    assert!(!err.contains("unknown field"), "{err}");
}
