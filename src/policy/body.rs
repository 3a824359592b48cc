//! What a user function's body runs. STABLE and IMMUTABLE are promises
//! PostgreSQL does not enforce, so a function is judged by the statements
//! in its body as well as by its volatility: `LANGUAGE sql` bodies are SQL
//! already; PL/pgSQL bodies are parsed with PostgreSQL's own PL/pgSQL
//! parser (libpg_query), and every SQL statement and expression in them is
//! collected. What cannot be seen (dynamic `EXECUTE` of computed text,
//! other procedural languages) is reported, to be judged unknown.

use serde_json::Value as Json;

/// The SQL a body runs, and what pgward cannot see of it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Body {
    /// SQL texts, each a whole statement (expressions come as `SELECT`s).
    pub statements: Vec<String>,
    /// Why some of what the body runs cannot be seen.
    pub hidden: Vec<String>,
}

/// The statements of a `LANGUAGE sql` body (`prosrc`, or the text of a
/// `BEGIN ATOMIC` body) or of a PL/pgSQL function (`definition` is
/// `pg_get_functiondef`'s CREATE FUNCTION text).
pub fn statements(language: &str, definition: &str) -> Body {
    match language {
        "sql" => Body {
            statements: vec![sql_body(definition)],
            hidden: Vec::new(),
        },
        "plpgsql" => plpgsql(definition),
        other => Body {
            statements: Vec::new(),
            hidden: vec![format!(
                "its body is in the language {other}, which pgward cannot inspect"
            )],
        },
    }
}

/// A `LANGUAGE sql` body as statements: a string body is SQL already;
/// `pg_get_function_sqlbody` shows a standard body as `BEGIN ATOMIC ...
/// END` or `RETURN expr`.
fn sql_body(text: &str) -> String {
    let t = text.trim();
    let upper = t.get(..12).unwrap_or("").to_ascii_uppercase();
    if upper == "BEGIN ATOMIC" {
        let inner = &t[12..];
        let inner = inner
            .trim_end()
            .strip_suffix("END")
            .or_else(|| inner.trim_end().strip_suffix("end"))
            .unwrap_or(inner);
        return inner.to_owned();
    }
    if upper.starts_with("RETURN ") || upper.starts_with("RETURN(") {
        return format!("SELECT {}", &t[6..]);
    }
    t.to_owned()
}

fn plpgsql(definition: &str) -> Body {
    let mut body = Body::default();
    // libpg_query writes malformed JSON for trigger and event trigger
    // functions (their NEW/OLD and TG_ variables); the body parses the same
    // when the header says it returns a record.
    let header_end = definition
        .find("\nAS ")
        .or_else(|| definition.find(" AS "))
        .unwrap_or(0);
    let (header, rest) = definition.split_at(header_end);
    let header = header
        .replacen("RETURNS trigger", "RETURNS record", 1)
        .replacen("RETURNS event_trigger", "RETURNS record", 1);
    let definition = format!("{header}{rest}");
    match pg_query::parse_plpgsql(&definition) {
        Ok(tree) => visit(&tree, &mut body),
        Err(e) => body
            .hidden
            .push(format!("its PL/pgSQL body does not parse: {e}")),
    }
    body
}

/// Statements whose expression is SQL text to run, by the field holding it.
const DYNAMIC: &[(&str, &str)] = &[
    ("PLpgSQL_stmt_dynexecute", "query"),
    ("PLpgSQL_stmt_dynfors", "query"),
    ("PLpgSQL_stmt_open", "dynquery"),
    ("PLpgSQL_stmt_return_query", "dynquery"),
];

fn visit(v: &Json, body: &mut Body) {
    match v {
        Json::Array(items) => items.iter().for_each(|i| visit(i, body)),
        Json::Object(map) => {
            for (key, value) in map {
                if key == "PLpgSQL_expr" {
                    expression(value, body);
                    continue;
                }
                if let Some((_, field)) = DYNAMIC.iter().find(|(k, _)| k == key) {
                    dynamic(value.get(*field), body);
                }
                visit(value, body);
            }
        }
        _ => {}
    }
}

/// One PL/pgSQL expression or statement as a whole SQL statement.
/// parseMode 0 is a statement; 2 an expression; 3 to 5 an assignment
/// (`target := expr`, also `target = expr`), whose right side is judged.
fn expression(expr: &Json, body: &mut Body) {
    let query = expr.get("query").and_then(Json::as_str).unwrap_or("");
    match expr.get("parseMode").and_then(Json::as_i64).unwrap_or(0) {
        0 => body.statements.push(query.to_owned()),
        2 => body.statements.push(format!("SELECT {query}")),
        3..=5 => match assigned(query) {
            Some(rhs) => body.statements.push(format!("SELECT {rhs}")),
            None => body
                .hidden
                .push(format!("an assignment pgward cannot read: {query}")),
        },
        mode => body
            .hidden
            .push(format!("an expression of parse mode {mode}: {query}")),
    }
}

/// The right side of `target := expr` or `target = expr`: after the first
/// `:=` or `=` outside brackets, as PostgreSQL's lexer finds them.
fn assigned(query: &str) -> Option<&str> {
    use pg_query::protobuf::Token;
    let scan = pg_query::scan(query).ok()?;
    let mut depth = 0i32;
    for t in &scan.tokens {
        match Token::try_from(t.token) {
            Ok(Token::Ascii40 | Token::Ascii91) => depth += 1,
            Ok(Token::Ascii41 | Token::Ascii93) => depth -= 1,
            Ok(Token::ColonEquals | Token::Ascii61) if depth == 0 => {
                return query.get(usize::try_from(t.end).ok()?..);
            }
            _ => {}
        }
    }
    None
}

/// `EXECUTE expr`: a string constant is SQL pgward can judge; anything
/// else is text made at run time.
fn dynamic(expr: Option<&Json>, body: &mut Body) {
    let query = expr
        .and_then(|e| e.get("PLpgSQL_expr"))
        .and_then(|e| e.get("query"))
        .and_then(Json::as_str)
        .unwrap_or("");
    match constant_string(query) {
        Some(sql) => body.statements.push(sql),
        None => body
            .hidden
            .push(format!("it runs SQL built at run time (EXECUTE {query})")),
    }
}

/// The value of an expression that is one string literal.
fn constant_string(expr: &str) -> Option<String> {
    // On a stack large enough for however deep the expression nests.
    super::classify::with_parse(&format!("SELECT {expr}"), |parsed| {
        constant_of(&parsed.ok()?)
    })
    .ok()
    .flatten()
}

fn constant_of(parsed: &pg_query::ParseResult) -> Option<String> {
    let [raw] = parsed.protobuf.stmts.as_slice() else {
        return None;
    };
    use pg_query::protobuf::node::Node;
    let Some(Node::SelectStmt(select)) = raw.stmt.as_ref()?.node.as_ref() else {
        return None;
    };
    let [target] = select.target_list.as_slice() else {
        return None;
    };
    let Some(Node::ResTarget(target)) = target.node.as_ref() else {
        return None;
    };
    let Some(Node::AConst(c)) = target.val.as_ref()?.node.as_ref() else {
        return None;
    };
    match c.val.as_ref()? {
        pg_query::protobuf::a_const::Val::Sval(s) => Some(s.sval.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plpgsql_body(code: &str) -> Body {
        statements(
            "plpgsql",
            &format!(
                "CREATE FUNCTION f(p int) RETURNS int LANGUAGE plpgsql AS $body$ {code} $body$"
            ),
        )
    }

    #[test]
    fn every_statement_and_expression_of_a_plpgsql_body() {
        let b = plpgsql_body(
            "DECLARE v int := (SELECT 1); r record;
             BEGIN
               v := p + (SELECT count(*) FROM api_keys);
               v = v + 1;
               IF v > 2 THEN INSERT INTO log VALUES (v); END IF;
               PERFORM pg_read_file('/x');
               EXECUTE 'DELETE FROM t';
               FOR r IN SELECT * FROM orders LOOP RAISE NOTICE '%', r; END LOOP;
               RETURN v;
             END",
        );
        for want in [
            "SELECT (SELECT 1)",
            "SELECT  p + (SELECT count(*) FROM api_keys)",
            "SELECT  v + 1",
            "SELECT v > 2",
            "INSERT INTO log VALUES (v)",
            "SELECT pg_read_file('/x')",
            "DELETE FROM t",
            "SELECT * FROM orders",
        ] {
            assert!(
                b.statements.iter().any(|s| s == want),
                "{want:?} not in {:?}",
                b.statements
            );
        }
        assert!(b.hidden.is_empty(), "{:?}", b.hidden);
    }

    #[test]
    fn trigger_functions_parse() {
        for returns in ["trigger", "event_trigger"] {
            let b = statements(
                "plpgsql",
                &format!(
                    "CREATE OR REPLACE FUNCTION public.t()\n RETURNS {returns}\n LANGUAGE plpgsql\nAS $function$ BEGIN INSERT INTO log VALUES (1); RETURN NULL; END $function$"
                ),
            );
            assert!(b.hidden.is_empty(), "{returns}: {:?}", b.hidden);
            assert!(b
                .statements
                .iter()
                .any(|s| s == "INSERT INTO log VALUES (1)"));
        }
    }

    #[test]
    fn what_cannot_be_seen_is_reported() {
        let b = plpgsql_body("BEGIN EXECUTE 'DELETE FROM ' || 't'; RETURN 1; END");
        assert_eq!(b.hidden.len(), 1, "{b:?}");
        let b = plpgsql_body("BEGIN RETURN QUERY EXECUTE format('SELECT %s', p); END");
        assert_eq!(b.hidden.len(), 1, "{b:?}");
        assert_eq!(statements("plperl", "return 1").hidden.len(), 1);
        assert_eq!(plpgsql_body("BEGIN oops; END").hidden.len(), 1);
        assert_eq!(statements("sql", "SELECT 1").statements, ["SELECT 1"]);
        assert_eq!(
            statements("sql", "RETURN (x + 1)").statements,
            ["SELECT  (x + 1)"]
        );
        assert_eq!(
            statements(
                "sql",
                "BEGIN ATOMIC\n INSERT INTO log (x) VALUES ('a'); SELECT $1;\nEND"
            )
            .statements,
            ["\n INSERT INTO log (x) VALUES ('a'); SELECT $1;\n"]
        );
    }
}
