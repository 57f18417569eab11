//! Where SQLite and PostgreSQL spell a thing differently, the fragment in
//! each: a statement is written once, as a macro taking the dialect (`pg`
//! or `sqlite`) and built with these, then chosen by the flag `run!`
//! gives:
//!
//! ```text
//! macro_rules! seen_sql { ($d:ident) => { concat!("… FROM (", json_texts!($d, "$2"), ") …") } }
//! let sql = if pg { seen_sql!(pg) } else { seen_sql!(sqlite) };
//! ```

/// The text values of a JSON array bound as parameter `$p`, as a subquery
/// yielding the column `value`.
macro_rules! json_texts {
    (pg, $p:literal) => {
        concat!("SELECT value FROM json_array_elements_text(", $p, "::json)")
    };
    (sqlite, $p:literal) => {
        concat!("SELECT value FROM json_each(", $p, ")")
    };
}
pub(super) use json_texts;

/// The integer values of a JSON array bound as parameter `$p`.
macro_rules! json_ints {
    (pg, $p:literal) => {
        concat!(
            "SELECT value::bigint FROM json_array_elements_text(",
            $p,
            "::json)"
        )
    };
    (sqlite, $p:literal) => {
        concat!("SELECT value FROM json_each(", $p, ")")
    };
}
pub(super) use json_ints;

/// The larger of two values.
macro_rules! greatest {
    (pg) => {
        "GREATEST"
    };
    (sqlite) => {
        "MAX"
    };
}
pub(super) use greatest;

/// The lease fence, as a condition: on PostgreSQL, true when no node is
/// named (`$node` is NULL: fencing off) or when the node `$node` holds the
/// lease in term `$term` by the database's own clock; on SQLite (one node,
/// no lease) always true, with both parameters still read so that the
/// same binds serve both.
macro_rules! fence {
    (pg, $node:literal, $term:literal) => {
        concat!(
            "(",
            $node,
            "::text IS NULL OR EXISTS (SELECT 1 FROM lease WHERE id = 1 AND holder = ",
            $node,
            " AND term = ",
            $term,
            " AND expires_at > clock_timestamp()))"
        )
    };
    (sqlite, $node:literal, $term:literal) => {
        concat!("(", $node, " IS NULL OR ", $term, " IS NULL OR true)")
    };
}
pub(super) use fence;
