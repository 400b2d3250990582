//! SQLite behind sqlx's `Any` driver, each statement run on the task that
//! sends it.
//!
//! Why: sqlx's own SQLite driver gives every connection a thread of its
//! own and hands each statement to it and back. Under checkout load that
//! hand-over was most of Kart's embedded CPU: two thread switches per
//! statement, against a few microseconds of SQLite's own work
//! (BENCHMARKS.md, stops 22–25). Kart's SQLite statements are short (rows
//! by key, bounded lists, a WAL commit with `synchronous = NORMAL` that
//! does not wait for the disk), so here they run in place, on the calling
//! tokio worker, and the thread switches are gone.
//!
//! What that costs: while a statement runs, its worker runs nothing else.
//! A statement that scans a large table holds up that worker's other tasks
//! for as long. Kart holds no connection across such work, and its
//! [`crate::held`] sets bound how many statements run at once. The WAL's
//! checkpoints, which fsync, run on a thread of their own
//! ([`Checkpointer`]), not in the commit that crosses a threshold.
//!
//! It is used only through [`sqlx::AnyConnection`]: [`crate::db::Db`]
//! installs [`DRIVER`] for `sqlite:` URLs, so every query Kart writes is
//! unchanged. Its behaviour follows sqlx-sqlite's `Any` backend where Kart
//! can see it: values come back typed by what SQLite stored (INTEGER as
//! `i64`, REAL as `f64`, TEXT, BLOB), a text of several statements runs
//! them in order with `?` and `$N` parameters numbered across the whole
//! text, `execute` sums each statement's `changes()`, and `fetch_optional`
//! stops at the first row. The types sqlx's `Database` trait requires
//! beyond that are [`OnlyThroughAny`], which has no values.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use rusqlite::OpenFlags;
use rusqlite::types::ValueRef;
use sqlx::any::{AnyArguments, AnyConnectOptions, AnyQueryResult, AnyRow, AnyStatement};
use sqlx::any::{AnyTypeInfo, AnyTypeInfoKind, AnyValue};
use sqlx::error::{BoxDynError, DatabaseError, ErrorKind};
use sqlx::{Database, Either};
use sqlx_core::any::driver::AnyDriver;
use sqlx_core::any::{AnyColumn, AnyConnectionBackend, AnyValueKind};
use sqlx_core::ext::ustr::UStr;

/// The driver [`crate::db::Db`] installs for `sqlite:` URLs.
pub const DRIVER: AnyDriver = AnyDriver::without_migrate::<InlineSqlite>();

/// A statement that runs this long is logged at warn: its tokio worker
/// ran nothing else meanwhile. sqlx's drivers warn after one second.
const SLOW_STATEMENT: Duration = Duration::from_secs(1);

/// How many prepared statements a connection keeps, as many as sqlx-sqlite
/// keeps: Kart's SQL is a fixed set of texts, with a few padded shapes of
/// its multi-row inserts, and every connection of every service has its
/// own cache.
const STATEMENT_CACHE_CAPACITY: usize = 100;

/// The database type sqlx's driver registry needs. Reached only through
/// `Any`.
#[derive(Debug)]
pub struct InlineSqlite;

impl Database for InlineSqlite {
    type Connection = InlineSqliteConnection;
    type TransactionManager = InlineTransactionManager;
    type Row = OnlyThroughAny;
    type QueryResult = AnyQueryResult;
    type Column = OnlyThroughAny;
    type TypeInfo = OnlyThroughAny;
    type Value = OnlyThroughAny;
    type ValueRef<'r> = OnlyThroughAny;
    type Arguments<'q> = NoArguments;
    type ArgumentBuffer<'q> = ();
    type Statement<'q> = OnlyThroughAny;

    const NAME: &'static str = "SQLite";
    const URL_SCHEMES: &'static [&'static str] = &["sqlite"];
}

/// One SQLite connection, on whichever task holds it.
pub struct InlineSqliteConnection {
    conn: rusqlite::Connection,
    /// Open `BEGIN`s and savepoints made through sqlx's transaction API.
    transaction_depth: usize,
    /// Each text's statements, parameters and columns, by text.
    shapes: sqlx_core::HashMap<String, Vec<StatementShape>>,
}

/// What a statement of a text needs besides its prepared form, worked out
/// when it first runs: where it is in the text, which argument each of its
/// parameters takes, and its columns. Kart runs a fixed set of texts, so
/// none of it is worked out again per call (the splitting, the parameter
/// names, the column map were about a tenth of `kart up`'s CPU).
struct StatementShape {
    range: std::ops::Range<usize>,
    parameters: Option<Vec<Parameter>>,
    columns: Option<Columns>,
}

/// How a statement's parameter finds its argument.
#[derive(Clone, Copy)]
enum Parameter {
    /// `?NNN` or `$NNN`: argument NNN of the whole text.
    Numbered(usize),
    /// A bare `?`: the next argument.
    Next,
}

/// How many texts' shapes a connection keeps before it starts again.
const SHAPE_CACHE_CAPACITY: usize = 256;

impl fmt::Debug for InlineSqliteConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InlineSqliteConnection")
            .field("transaction_depth", &self.transaction_depth)
            .finish_non_exhaustive()
    }
}

impl InlineSqliteConnection {
    fn open(options: &InlineSqliteOptions) -> Result<Self, sqlx::Error> {
        let conn = match &options.path {
            None => rusqlite::Connection::open_in_memory_with_flags(options.flags),
            Some(path) => rusqlite::Connection::open_with_flags(path, options.flags),
        }
        .map_err(database_error)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        Ok(InlineSqliteConnection {
            conn,
            transaction_depth: 0,
            shapes: sqlx_core::HashMap::default(),
        })
    }

    /// Runs every statement of `sql` in order, collecting what each gives:
    /// its rows, then its result. Stops after `limit` rows, if given.
    fn run(
        &mut self,
        sql: &str,
        arguments: &[AnyValueKind<'_>],
        limit: Option<usize>,
    ) -> Result<Vec<Either<AnyQueryResult, AnyRow>>, sqlx::Error> {
        let started = Instant::now();
        let result = self.run_unlogged(sql, arguments, limit);
        log_statement(sql, started.elapsed(), &result);
        result
    }

    fn run_unlogged(
        &mut self,
        sql: &str,
        arguments: &[AnyValueKind<'_>],
        limit: Option<usize>,
    ) -> Result<Vec<Either<AnyQueryResult, AnyRow>>, sqlx::Error> {
        let (key, mut shapes) = match self.shapes.remove_entry(sql) {
            Some(cached) => cached,
            None => (sql.to_owned(), shapes_of(sql)?),
        };
        let result = self.run_shaped(sql, &mut shapes, arguments, limit);
        if self.shapes.len() >= SHAPE_CACHE_CAPACITY {
            self.shapes.clear();
        }
        self.shapes.insert(key, shapes);
        result
    }

    fn run_shaped(
        &self,
        sql: &str,
        shapes: &mut [StatementShape],
        arguments: &[AnyValueKind<'_>],
        limit: Option<usize>,
    ) -> Result<Vec<Either<AnyQueryResult, AnyRow>>, sqlx::Error> {
        let mut out = Vec::new();
        let mut rows_seen = 0;
        let mut arguments_used = 0;
        for shape in shapes {
            let mut statement = self
                .conn
                .prepare_cached(&sql[shape.range.clone()])
                .map_err(database_error)?;
            let parameters = match &mut shape.parameters {
                Some(parameters) => parameters,
                unknown => unknown.insert(parameters(&statement)?),
            };
            arguments_used += bind(&mut statement, parameters, arguments, arguments_used)?;
            let mut rows = statement.raw_query();
            let mut columns_checked = false;
            while let Some(row) = rows.next().map_err(database_error)? {
                // A schema change can give `SELECT *` other columns, which
                // SQLite sees only once the statement steps (it prepares it
                // again then): so the kept names are compared with the
                // first row's statement, which costs no allocation.
                let columns = match &mut shape.columns {
                    Some(columns) if columns_checked || columns.match_statement(row.as_ref()) => {
                        columns
                    }
                    slot => slot.insert(columns(row.as_ref())?),
                };
                columns_checked = true;
                out.push(Either::Right(any_row(row, columns)?));
                rows_seen += 1;
                if limit.is_some_and(|limit| rows_seen >= limit) {
                    return Ok(out);
                }
            }
            drop(rows);
            out.push(Either::Left(AnyQueryResult {
                rows_affected: self.conn.changes(),
                last_insert_id: None,
            }));
        }
        Ok(out)
    }

    fn run_text(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        self.run(sql, &[], None).map(drop)
    }

    fn begin(&mut self, statement: Option<Cow<'static, str>>) -> Result<(), sqlx::Error> {
        match (self.transaction_depth, statement) {
            (0, statement) => self.run_text(statement.as_deref().unwrap_or("BEGIN"))?,
            (_, Some(_)) => return Err(sqlx::Error::InvalidSavePointStatement),
            (depth, None) => self.run_text(&format!("SAVEPOINT _sqlx_savepoint_{depth}"))?,
        }
        self.transaction_depth += 1;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), sqlx::Error> {
        match self.transaction_depth {
            0 => return Ok(()),
            1 => self.run_text("COMMIT")?,
            depth => self.run_text(&format!("RELEASE SAVEPOINT _sqlx_savepoint_{}", depth - 1))?,
        }
        self.transaction_depth -= 1;
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), sqlx::Error> {
        match self.transaction_depth {
            0 => return Ok(()),
            1 => self.run_text("ROLLBACK")?,
            depth => self.run_text(&format!(
                "ROLLBACK TO SAVEPOINT _sqlx_savepoint_{}",
                depth - 1
            ))?,
        }
        self.transaction_depth -= 1;
        Ok(())
    }
}

/// Logs a statement as sqlx's drivers do, under the same target: every
/// one at debug (`sqlx::query=debug` counts them), and at warn one that
/// held its worker for longer than [`SLOW_STATEMENT`].
fn log_statement(
    sql: &str,
    elapsed: Duration,
    result: &Result<Vec<Either<AnyQueryResult, AnyRow>>, sqlx::Error>,
) {
    let slow = elapsed >= SLOW_STATEMENT;
    if !slow && !tracing::enabled!(target: "sqlx::query", tracing::Level::DEBUG) {
        return;
    }
    let summary: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let summary = summary.chars().take(80).collect::<String>();
    let (rows_returned, rows_affected) = match result {
        Ok(results) => results
            .iter()
            .fold((0, 0), |(rows, affected), result| match result {
                Either::Right(_) => (rows + 1, affected),
                Either::Left(done) => (rows, affected + done.rows_affected),
            }),
        Err(_) => (0, 0),
    };
    let elapsed_secs = elapsed.as_secs_f64();
    if slow {
        tracing::warn!(target: "sqlx::query", summary, rows_returned, rows_affected, elapsed_secs, "slow statement");
    } else {
        tracing::debug!(target: "sqlx::query", summary, rows_returned, rows_affected, elapsed_secs);
    }
}

/// Binds `arguments` to `statement`'s parameters, as sqlx-sqlite does: a
/// `?NNN` or `$NNN` parameter takes argument NNN of the whole text, a bare
/// `?` the next one after `offset`; a parameter past the last argument is
/// left NULL. Returns how many bare `?` it took.
fn bind(
    statement: &mut rusqlite::Statement<'_>,
    parameters: &[Parameter],
    arguments: &[AnyValueKind<'_>],
    offset: usize,
) -> Result<usize, sqlx::Error> {
    let mut next = offset;
    for (index, parameter) in (1..).zip(parameters) {
        let number = match *parameter {
            Parameter::Numbered(number) => number,
            Parameter::Next => {
                next += 1;
                next
            }
        };
        let Some(value) = arguments.get(number - 1) else {
            break;
        };
        let bound = match value {
            AnyValueKind::Null(_) => statement.raw_bind_parameter(index, rusqlite::types::Null),
            AnyValueKind::Bool(b) => statement.raw_bind_parameter(index, i64::from(*b)),
            AnyValueKind::SmallInt(i) => statement.raw_bind_parameter(index, i64::from(*i)),
            AnyValueKind::Integer(i) => statement.raw_bind_parameter(index, i64::from(*i)),
            AnyValueKind::BigInt(i) => statement.raw_bind_parameter(index, *i),
            AnyValueKind::Real(r) => statement.raw_bind_parameter(index, f64::from(*r)),
            AnyValueKind::Double(d) => statement.raw_bind_parameter(index, *d),
            AnyValueKind::Text(text) => statement.raw_bind_parameter(index, text.as_ref()),
            AnyValueKind::Blob(blob) => statement.raw_bind_parameter(index, blob.as_ref()),
            other => {
                return Err(sqlx::Error::Encode(
                    format!("SQLite cannot take the value {other:?}").into(),
                ));
            }
        };
        bound.map_err(database_error)?;
    }
    Ok(next - offset)
}

/// Which argument each of `statement`'s parameters takes.
fn parameters(statement: &rusqlite::Statement<'_>) -> Result<Vec<Parameter>, sqlx::Error> {
    (1..=statement.parameter_count())
        .map(|index| match statement.parameter_name(index) {
            Some(name) => name
                .strip_prefix(['?', '$'])
                .and_then(|digits| digits.parse::<usize>().ok())
                .filter(|&number| number > 0)
                .map(Parameter::Numbered)
                .ok_or_else(|| {
                    sqlx::Error::Protocol(format!("unsupported SQL parameter {name}: use ? or $N"))
                }),
            None => Ok(Parameter::Next),
        })
        .collect()
}

/// A statement's column names, by position and by name, shared by its rows.
struct Columns {
    names: Vec<UStr>,
    by_name: Arc<sqlx_core::HashMap<UStr, usize>>,
}

impl Columns {
    /// Whether `statement` has these columns, in this order.
    fn match_statement(&self, statement: &rusqlite::Statement<'_>) -> bool {
        statement.column_count() == self.names.len()
            && self.names.iter().enumerate().all(|(index, name)| {
                statement
                    .column_name(index)
                    .is_ok_and(|actual| actual == &**name)
            })
    }
}

fn columns(statement: &rusqlite::Statement<'_>) -> Result<Columns, sqlx::Error> {
    let mut names = Vec::with_capacity(statement.column_count());
    let mut by_name = sqlx_core::HashMap::default();
    for index in 0..statement.column_count() {
        let name = UStr::from(
            statement
                .column_name(index)
                .map_err(database_error)?
                .to_owned(),
        );
        by_name.insert(name.clone(), index);
        names.push(name);
    }
    Ok(Columns {
        names,
        by_name: Arc::new(by_name),
    })
}

/// A row as sqlx's `Any` rows are: each value typed by what SQLite stored.
fn any_row(row: &rusqlite::Row<'_>, columns: &Columns) -> Result<AnyRow, sqlx::Error> {
    let mut any_columns = Vec::with_capacity(columns.names.len());
    let mut values = Vec::with_capacity(columns.names.len());
    for (ordinal, name) in columns.names.iter().enumerate() {
        let (kind, type_kind) = match row.get_ref(ordinal).map_err(database_error)? {
            ValueRef::Null => (
                AnyValueKind::Null(AnyTypeInfoKind::Null),
                AnyTypeInfoKind::Null,
            ),
            ValueRef::Integer(i) => (AnyValueKind::BigInt(i), AnyTypeInfoKind::BigInt),
            ValueRef::Real(r) => (AnyValueKind::Double(r), AnyTypeInfoKind::Double),
            ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => (
                    AnyValueKind::Text(Cow::Owned(text.to_owned())),
                    AnyTypeInfoKind::Text,
                ),
                Err(e) => {
                    return Err(sqlx::Error::ColumnDecode {
                        index: ordinal.to_string(),
                        source: Box::new(e),
                    });
                }
            },
            ValueRef::Blob(bytes) => (
                AnyValueKind::Blob(Cow::Owned(bytes.to_vec())),
                AnyTypeInfoKind::Blob,
            ),
        };
        any_columns.push(AnyColumn {
            ordinal,
            name: name.clone(),
            type_info: AnyTypeInfo { kind: type_kind },
        });
        values.push(AnyValue { kind });
    }
    Ok(AnyRow {
        column_names: Arc::clone(&columns.by_name),
        columns: any_columns,
        values,
    })
}

/// The shapes of `sql`'s statements, none of them worked out yet.
fn shapes_of(sql: &str) -> Result<Vec<StatementShape>, sqlx::Error> {
    Ok(statement_ranges(sql)?
        .into_iter()
        .map(|range| StatementShape {
            range,
            parameters: None,
            columns: None,
        })
        .collect())
}

/// The statements of `sql`, split at the semicolons SQLite would end them
/// at: outside quotes ('…', "…", `…`, […]) and comments (-- and /* */).
/// A trigger's body has semicolons of its own, so a text that creates one
/// is refused rather than split wrongly; Kart creates none.
fn statement_ranges(sql: &str) -> Result<Vec<std::ops::Range<usize>>, sqlx::Error> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut has_code = false;
    let mut i = 0;
    while i < bytes.len() {
        // Past the next `end` from `from`, or to the end of the text.
        let skip_to = |from: usize, end: &str| {
            sql[from..]
                .find(end)
                .map_or(bytes.len(), |at| from + at + end.len())
        };
        match bytes[i] {
            b'\'' | b'"' | b'`' => {
                let quote = bytes[i];
                let mut j = i + 1;
                // A doubled quote is an escaped one: keep going.
                while j < bytes.len() {
                    if bytes[j] == quote {
                        if bytes.get(j + 1) == Some(&quote) {
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    j += 1;
                }
                has_code = true;
                i = j + 1;
            }
            b'[' => {
                has_code = true;
                i = skip_to(i + 1, "]");
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => i = skip_to(i + 2, "\n"),
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_to(i + 2, "*/"),
            b';' => {
                if has_code {
                    out.push(start..i);
                }
                has_code = false;
                i += 1;
                start = i;
            }
            byte => {
                has_code |= !byte.is_ascii_whitespace();
                i += 1;
            }
        }
    }
    if has_code {
        out.push(start..sql.len());
    }
    if out.iter().any(|range| creates_trigger(&sql[range.clone()])) {
        return Err(sqlx::Error::Protocol(
            "CREATE TRIGGER is not supported by Kart's SQLite driver".to_owned(),
        ));
    }
    Ok(out)
}

fn creates_trigger(statement: &str) -> bool {
    let mut words = statement.split_ascii_whitespace().take(4);
    words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("CREATE"))
        && words.any(|w| w.eq_ignore_ascii_case("TRIGGER"))
}

/// A failure, with SQLite's extended result code where it gave one.
fn database_error(error: rusqlite::Error) -> sqlx::Error {
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            sqlx::Error::Database(Box::new(SqliteFailure {
                extended_code: failure.extended_code,
                message: message.unwrap_or_else(|| failure.to_string()),
            }))
        }
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// A statement SQLite refused, shaped like sqlx-sqlite's errors: `code()`
/// is the extended result code, so constraint kinds read the same.
#[derive(Debug)]
struct SqliteFailure {
    extended_code: i32,
    message: String,
}

impl fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(code: {}) {}", self.extended_code, self.message)
    }
}

impl std::error::Error for SqliteFailure {}

impl DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.extended_code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.extended_code {
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => ErrorKind::UniqueViolation,
            rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            rusqlite::ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

impl AnyConnectionBackend for InlineSqliteConnection {
    fn name(&self) -> &str {
        InlineSqlite::NAME
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), sqlx::Error>> {
        Box::pin(async move { self.conn.close().map_err(|(_, e)| database_error(e)) })
    }

    fn close_hard(self: Box<Self>) -> BoxFuture<'static, Result<(), sqlx::Error>> {
        self.close()
    }

    fn ping(&mut self) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move { self.run_text("SELECT 1") })
    }

    fn begin(
        &mut self,
        statement: Option<Cow<'static, str>>,
    ) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move { InlineSqliteConnection::begin(self, statement) })
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move { InlineSqliteConnection::commit(self) })
    }

    fn rollback(&mut self) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move { InlineSqliteConnection::rollback(self) })
    }

    fn start_rollback(&mut self) {
        // Nothing to hand over: the rollback runs now. Should it fail, the
        // connection is still in its transaction and the next BEGIN says so.
        if let Err(e) = InlineSqliteConnection::rollback(self) {
            tracing::warn!(error = %e, "rolling back a dropped SQLite transaction failed");
        }
    }

    fn get_transaction_depth(&self) -> usize {
        self.transaction_depth
    }

    fn shrink_buffers(&mut self) {}

    fn flush(&mut self) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async { Ok(()) })
    }

    fn should_flush(&self) -> bool {
        false
    }

    fn fetch_many<'q>(
        &'q mut self,
        query: &'q str,
        _persistent: bool,
        arguments: Option<AnyArguments<'q>>,
    ) -> BoxStream<'q, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>> {
        let values = arguments.map(|a| a.values.0).unwrap_or_default();
        let results = match self.run(query, &values, None) {
            Ok(results) => results.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        Box::pin(futures_util::stream::iter(results))
    }

    fn fetch_optional<'q>(
        &'q mut self,
        query: &'q str,
        _persistent: bool,
        arguments: Option<AnyArguments<'q>>,
    ) -> BoxFuture<'q, Result<Option<AnyRow>, sqlx::Error>> {
        let values = arguments.map(|a| a.values.0).unwrap_or_default();
        let result = self.run(query, &values, Some(1)).map(|results| {
            results.into_iter().find_map(|result| match result {
                Either::Right(row) => Some(row),
                Either::Left(_) => None,
            })
        });
        Box::pin(async move { result })
    }

    fn prepare_with<'c, 'q: 'c>(
        &'c mut self,
        _sql: &'q str,
        _parameters: &[AnyTypeInfo],
    ) -> BoxFuture<'c, Result<AnyStatement<'q>, sqlx::Error>> {
        Box::pin(async {
            Err(sqlx::Error::Protocol(
                "Kart's SQLite driver prepares statements itself; run the query".to_owned(),
            ))
        })
    }

    fn describe<'q>(
        &'q mut self,
        _sql: &'q str,
    ) -> BoxFuture<'q, Result<sqlx::Describe<sqlx::Any>, sqlx::Error>> {
        Box::pin(async {
            Err(sqlx::Error::Protocol(
                "Kart's SQLite driver does not describe queries".to_owned(),
            ))
        })
    }
}

impl sqlx::Connection for InlineSqliteConnection {
    type Database = InlineSqlite;
    type Options = InlineSqliteOptions;

    fn close(self) -> BoxFuture<'static, Result<(), sqlx::Error>> {
        AnyConnectionBackend::close(Box::new(self))
    }

    fn close_hard(self) -> BoxFuture<'static, Result<(), sqlx::Error>> {
        AnyConnectionBackend::close(Box::new(self))
    }

    fn ping(&mut self) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        AnyConnectionBackend::ping(self)
    }

    fn begin(&mut self) -> BoxFuture<'_, Result<sqlx::Transaction<'_, InlineSqlite>, sqlx::Error>> {
        sqlx::Transaction::begin(self, None)
    }

    fn shrink_buffers(&mut self) {}

    fn flush(&mut self) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async { Ok(()) })
    }

    fn should_flush(&self) -> bool {
        false
    }
}

/// sqlx's transaction API over [`InlineSqliteConnection`]'s own.
#[derive(Debug)]
pub struct InlineTransactionManager;

impl sqlx::TransactionManager for InlineTransactionManager {
    type Database = InlineSqlite;

    fn begin<'conn>(
        conn: &'conn mut InlineSqliteConnection,
        statement: Option<Cow<'static, str>>,
    ) -> BoxFuture<'conn, Result<(), sqlx::Error>> {
        Box::pin(async move { conn.begin(statement) })
    }

    fn commit(conn: &mut InlineSqliteConnection) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move { conn.commit() })
    }

    fn rollback(conn: &mut InlineSqliteConnection) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move { conn.rollback() })
    }

    fn start_rollback(conn: &mut InlineSqliteConnection) {
        AnyConnectionBackend::start_rollback(conn)
    }

    fn get_transaction_depth(conn: &InlineSqliteConnection) -> usize {
        conn.transaction_depth
    }
}

/// Where and how to open: `sqlite::memory:`, or `sqlite://PATH` with an
/// optional `?mode=ro|rw|rwc|memory` (sqlx's default is `rw`: the file
/// must exist).
#[derive(Clone, Debug)]
pub struct InlineSqliteOptions {
    /// `None` for a private in-memory database.
    path: Option<String>,
    flags: OpenFlags,
}

impl FromStr for InlineSqliteOptions {
    type Err = sqlx::Error;

    fn from_str(url: &str) -> Result<Self, sqlx::Error> {
        if !url.starts_with("sqlite:") {
            return Err(sqlx::Error::Configuration(
                format!("not a sqlite: URL: {url}").into(),
            ));
        }
        let (path, query) = crate::db::split_sqlite_url(url);
        let mode = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("mode="))
            .unwrap_or("rw");
        let base = OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let flags = match mode {
            "ro" => base | OpenFlags::SQLITE_OPEN_READ_ONLY,
            "rw" => base | OpenFlags::SQLITE_OPEN_READ_WRITE,
            "rwc" => base | OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            "memory" => base | OpenFlags::SQLITE_OPEN_READ_WRITE,
            other => {
                return Err(sqlx::Error::Configuration(
                    format!("unknown SQLite mode {other}: use ro, rw, rwc or memory").into(),
                ));
            }
        };
        let in_memory = path.is_empty() || path == ":memory:" || mode == "memory";
        if in_memory {
            return Ok(InlineSqliteOptions { path: None, flags });
        }
        // A URL carries a path with spaces or non-ASCII letters encoded.
        let path = percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .map_err(|e| sqlx::Error::Configuration(format!("SQLite path in {url}: {e}").into()))?;
        Ok(InlineSqliteOptions {
            path: Some(path.into_owned()),
            flags,
        })
    }
}

impl sqlx::ConnectOptions for InlineSqliteOptions {
    type Connection = InlineSqliteConnection;

    fn from_url(url: &sqlx_core::Url) -> Result<Self, sqlx::Error> {
        url.as_str().parse()
    }

    fn connect(&self) -> BoxFuture<'_, Result<InlineSqliteConnection, sqlx::Error>> {
        Box::pin(async move { InlineSqliteConnection::open(self) })
    }

    fn log_statements(self, _level: log::LevelFilter) -> Self {
        self
    }

    fn log_slow_statements(self, _level: log::LevelFilter, _duration: Duration) -> Self {
        self
    }
}

impl TryFrom<&AnyConnectOptions> for InlineSqliteOptions {
    type Error = sqlx::Error;

    fn try_from(options: &AnyConnectOptions) -> Result<Self, sqlx::Error> {
        options.database_url.as_str().parse()
    }
}

/// Copies a database's WAL back into its file on a thread of its own.
///
/// Why: SQLite's automatic checkpoint runs inside the `COMMIT` that
/// pushes the WAL past its threshold, on whatever task sent it: here a
/// tokio worker, which then runs nothing else for the copy and its two
/// fsyncs (2–50 ms under checkout load, against about 60 µs for a
/// commit without one), while the database's one writer stays leased.
/// Under checkout load that was about one commit in forty, and most of
/// the time spent in commits. So the writer's automatic checkpoint is
/// moved far out, to [`BACKSTOP_WAL_PAGES`], and this thread runs a
/// `PASSIVE` checkpoint every [`CHECKPOINT_EVERY`] while there are
/// commits to copy: it waits for no one, and a writer appends to the
/// WAL while it copies. It stops when the last handle is dropped.
pub(crate) struct Checkpointer {
    _stop: std::sync::mpsc::Sender<()>,
}

/// How often a busy database's WAL is checkpointed.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// How long an idle database's checkpointer sleeps between looks.
const CHECKPOINT_IDLE: Duration = Duration::from_secs(2);

/// The writer's own automatic checkpoint (`wal_autocheckpoint`, in pages
/// of 4 KiB): only if the checkpointer cannot keep up, say while long reads
/// pin the WAL, does a commit copy it back itself, before it grows past
/// about 16 MB.
pub(crate) const BACKSTOP_WAL_PAGES: u32 = 4000;

impl Checkpointer {
    /// Starts checkpointing the database `options` names; `None` for an
    /// in-memory database, which has no WAL.
    pub(crate) fn start(options: &AnyConnectOptions) -> Result<Option<Checkpointer>, sqlx::Error> {
        let options = InlineSqliteOptions::try_from(options)?;
        let Some(path) = options.path.clone() else {
            return Ok(None);
        };
        let conn = InlineSqliteConnection::open(&options)?.conn;
        // The checkpoint reads WAL frames and writes database pages without
        // the page cache; `NORMAL` syncs the WAL before it copies and the
        // file after, which is what makes the copy safe to rely on.
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -64;")
            .map_err(database_error)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("kart-checkpoint".to_owned())
            .spawn(move || checkpoint_until_stopped(&conn, &path, &stopped))
            .map_err(sqlx::Error::Io)?;
        Ok(Some(Checkpointer { _stop: stop }))
    }
}

fn checkpoint_until_stopped(
    conn: &rusqlite::Connection,
    path: &str,
    stopped: &std::sync::mpsc::Receiver<()>,
) {
    let mut wait = CHECKPOINT_EVERY;
    // The WAL's frames and how many of them were copied, as last seen.
    let mut last_seen = (0_i64, 0_i64);
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
        let started = Instant::now();
        let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match outcome {
            Ok(seen) => {
                // Back off while nothing is written; look often while it is.
                wait = if seen == last_seen {
                    (wait * 2).min(CHECKPOINT_IDLE)
                } else {
                    CHECKPOINT_EVERY
                };
                last_seen = seen;
                let elapsed = started.elapsed();
                if elapsed >= SLOW_STATEMENT {
                    tracing::warn!(
                        path,
                        elapsed_secs = elapsed.as_secs_f64(),
                        "slow WAL checkpoint"
                    );
                }
            }
            Err(error) => {
                tracing::warn!(path, %error, "WAL checkpoint failed; the writer's own will run");
                wait = CHECKPOINT_IDLE;
            }
        }
    }
}

/// The rows, columns, values, statements and type information sqlx's
/// `Database` trait asks a driver to name. This driver hands all of them
/// out as `Any`'s, so none of these is ever made: the type has no values.
#[derive(Debug, Clone, PartialEq)]
pub enum OnlyThroughAny {}

impl fmt::Display for OnlyThroughAny {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl sqlx::TypeInfo for OnlyThroughAny {
    fn is_null(&self) -> bool {
        match *self {}
    }

    fn name(&self) -> &str {
        match *self {}
    }
}

impl sqlx::Column for OnlyThroughAny {
    type Database = InlineSqlite;

    fn ordinal(&self) -> usize {
        match *self {}
    }

    fn name(&self) -> &str {
        match *self {}
    }

    fn type_info(&self) -> &OnlyThroughAny {
        match *self {}
    }
}

impl sqlx::Row for OnlyThroughAny {
    type Database = InlineSqlite;

    fn columns(&self) -> &[OnlyThroughAny] {
        match *self {}
    }

    fn try_get_raw<I>(&self, _index: I) -> Result<OnlyThroughAny, sqlx::Error>
    where
        I: sqlx::ColumnIndex<Self>,
    {
        match *self {}
    }
}

impl sqlx::Value for OnlyThroughAny {
    type Database = InlineSqlite;

    fn as_ref(&self) -> OnlyThroughAny {
        match *self {}
    }

    fn type_info(&self) -> Cow<'_, OnlyThroughAny> {
        match *self {}
    }

    fn is_null(&self) -> bool {
        match *self {}
    }
}

impl<'r> sqlx::ValueRef<'r> for OnlyThroughAny {
    type Database = InlineSqlite;

    fn to_owned(&self) -> OnlyThroughAny {
        match *self {}
    }

    fn type_info(&self) -> Cow<'_, OnlyThroughAny> {
        match *self {}
    }

    fn is_null(&self) -> bool {
        match *self {}
    }
}

impl<'q> sqlx::Statement<'q> for OnlyThroughAny {
    type Database = InlineSqlite;

    fn to_owned(&self) -> OnlyThroughAny {
        match *self {}
    }

    fn sql(&self) -> &str {
        match *self {}
    }

    fn parameters(&self) -> Option<Either<&[OnlyThroughAny], usize>> {
        match *self {}
    }

    fn columns(&self) -> &[OnlyThroughAny] {
        match *self {}
    }

    fn query(&self) -> sqlx::query::Query<'_, InlineSqlite, NoArguments> {
        match *self {}
    }

    fn query_with<'s, A>(&'s self, _arguments: A) -> sqlx::query::Query<'s, InlineSqlite, A>
    where
        A: sqlx::IntoArguments<'s, InlineSqlite>,
    {
        match *self {}
    }

    fn query_as<O>(&self) -> sqlx::query::QueryAs<'_, InlineSqlite, O, NoArguments>
    where
        O: for<'r> sqlx::FromRow<'r, OnlyThroughAny>,
    {
        match *self {}
    }

    fn query_as_with<'s, O, A>(
        &'s self,
        _arguments: A,
    ) -> sqlx::query::QueryAs<'s, InlineSqlite, O, A>
    where
        O: for<'r> sqlx::FromRow<'r, OnlyThroughAny>,
        A: sqlx::IntoArguments<'s, InlineSqlite>,
    {
        match *self {}
    }

    fn query_scalar<O>(&self) -> sqlx::query::QueryScalar<'_, InlineSqlite, O, NoArguments>
    where
        (O,): for<'r> sqlx::FromRow<'r, OnlyThroughAny>,
    {
        match *self {}
    }

    fn query_scalar_with<'s, O, A>(
        &'s self,
        _arguments: A,
    ) -> sqlx::query::QueryScalar<'s, InlineSqlite, O, A>
    where
        (O,): for<'r> sqlx::FromRow<'r, OnlyThroughAny>,
        A: sqlx::IntoArguments<'s, InlineSqlite>,
    {
        match *self {}
    }
}

/// The arguments type sqlx's `Database` trait asks for. Queries reach this
/// driver with `Any`'s arguments, so nothing can be added to this one.
#[derive(Debug, Default)]
pub struct NoArguments;

impl<'q> sqlx::Arguments<'q> for NoArguments {
    type Database = InlineSqlite;

    fn reserve(&mut self, _additional: usize, _size: usize) {}

    fn add<T>(&mut self, _value: T) -> Result<(), BoxDynError>
    where
        T: 'q + sqlx::Encode<'q, InlineSqlite> + sqlx::Type<InlineSqlite>,
    {
        Err("Kart's SQLite driver takes its arguments through sqlx's Any driver".into())
    }

    fn len(&self) -> usize {
        0
    }
}

impl<'q> sqlx::IntoArguments<'q, InlineSqlite> for NoArguments {
    fn into_arguments(self) -> NoArguments {
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use sqlx::{Connection, Executor, Row};

    /// The statements' texts.
    fn statements(sql: &str) -> Result<Vec<&str>, sqlx::Error> {
        Ok(super::statement_ranges(sql)?
            .into_iter()
            .map(|range| &sql[range])
            .collect())
    }

    async fn connect(url: &str) -> sqlx::AnyConnection {
        crate::db::install_drivers();
        sqlx::AnyConnection::connect(url).await.expect("connects")
    }

    async fn in_memory_with_table() -> sqlx::AnyConnection {
        let mut conn = connect("sqlite::memory:").await;
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, price REAL, data BLOB)")
            .await
            .unwrap();
        conn
    }

    #[test]
    fn a_text_splits_at_the_semicolons_sqlite_ends_statements_at() {
        assert_eq!(statements("SELECT 1").unwrap(), ["SELECT 1"]);
        assert_eq!(
            statements("SELECT 1; SELECT 2;").unwrap(),
            ["SELECT 1", " SELECT 2"]
        );
        assert_eq!(
            statements("SELECT 'a;b', \"c;\"\"d\", `e;f`, [g;h]; SELECT 'it''s; fine'").unwrap(),
            [
                "SELECT 'a;b', \"c;\"\"d\", `e;f`, [g;h]",
                " SELECT 'it''s; fine'"
            ]
        );
        assert_eq!(
            statements("-- a; comment\nSELECT 1 /* b; c */; ;  -- end;\n").unwrap(),
            ["-- a; comment\nSELECT 1 /* b; c */"]
        );
        assert!(statements("  ;  -- nothing\n").unwrap().is_empty());
        assert!(statements("CREATE TEMP TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; END").is_err());
    }

    /// A text's columns are kept between runs, and checked each time.
    #[tokio::test]
    async fn a_text_run_again_after_its_table_changed_sees_the_new_columns() {
        let mut conn = in_memory_with_table().await;
        conn.execute("INSERT INTO t (id, name) VALUES (1, 'one')")
            .await
            .unwrap();
        let before = sqlx::query("SELECT * FROM t")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(before.columns().len(), 4);
        conn.execute("ALTER TABLE t ADD COLUMN colour TEXT NOT NULL DEFAULT 'red'")
            .await
            .unwrap();
        let after = sqlx::query("SELECT * FROM t")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(after.columns().len(), 5);
        assert_eq!(after.get::<String, _>("colour"), "red");
        // The same text in a text of its own: its parameters and columns.
        for (id, name) in [(2_i64, "two"), (3, "three")] {
            sqlx::query("INSERT INTO t (id, name) VALUES (?, ?); SELECT name FROM t WHERE id = ?")
                .bind(id)
                .bind(name)
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .map(|row| assert_eq!(row.get::<String, _>("name"), name))
                .unwrap();
        }
    }

    #[tokio::test]
    async fn values_come_back_typed_by_what_sqlite_stored() {
        let mut conn = in_memory_with_table().await;
        sqlx::query(
            "INSERT INTO t (id, name, price, data) VALUES ($1, $2, $3, $4), (?5, ?6, NULL, NULL)",
        )
        .bind(7_i64)
        .bind("seven")
        .bind(7.5_f64)
        .bind(vec![0_u8, 1, 2])
        .bind(8_i32)
        .bind("eight")
        .execute(&mut conn)
        .await
        .unwrap();
        let rows = sqlx::query("SELECT id, name, price, data FROM t ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].get::<i64, _>("id"), 7);
        assert_eq!(rows[0].get::<i32, _>(0), 7);
        assert_eq!(rows[0].get::<String, _>("name"), "seven");
        assert_eq!(rows[0].get::<f64, _>("price"), 7.5);
        assert_eq!(rows[0].get::<Vec<u8>, _>("data"), [0, 1, 2]);
        assert_eq!(rows[1].get::<Option<f64>, _>("price"), None);
        assert_eq!(rows[1].get::<Option<Vec<u8>>, _>("data"), None);
        // Typed by storage, as sqlx-sqlite's `Any` rows are: an integer is
        // not text.
        assert!(rows[0].try_get::<String, _>("id").is_err());
    }

    #[tokio::test]
    async fn a_text_of_several_statements_numbers_its_parameters_across_the_text() {
        let mut conn = in_memory_with_table().await;
        let done = sqlx::query(
            "INSERT INTO t (id, name) VALUES (?, ?); \
             INSERT INTO t (id, name) VALUES (?, ?); \
             UPDATE t SET price = $5 WHERE id IN ($1, $3)",
        )
        .bind(1_i64)
        .bind("one")
        .bind(2_i64)
        .bind("two")
        .bind(2.5_f64)
        .execute(&mut conn)
        .await
        .unwrap();
        // Each statement's `changes()`, summed: 1 + 1 + 2.
        assert_eq!(done.rows_affected(), 4);
        let prices: Vec<f64> = sqlx::query_scalar("SELECT price FROM t ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(prices, [2.5, 2.5]);
    }

    #[tokio::test]
    async fn fetch_optional_stops_at_the_first_row() {
        let mut conn = in_memory_with_table().await;
        let row = sqlx::query(
            "INSERT INTO t (id, name) VALUES (1, 'one') RETURNING id; \
             INSERT INTO t (id, name) VALUES (2, 'two')",
        )
        .fetch_optional(&mut conn)
        .await
        .unwrap()
        .expect("a row");
        assert_eq!(row.get::<i64, _>(0), 1);
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(count, 1, "the statement after the first row did not run");
    }

    #[tokio::test]
    async fn constraint_failures_read_as_sqlx_sqlites_do() {
        let mut conn = in_memory_with_table().await;
        let insert = "INSERT INTO t (id, name) VALUES ($1, $2)";
        sqlx::query(insert)
            .bind(1_i64)
            .bind("a")
            .execute(&mut conn)
            .await
            .unwrap();
        let same_name = sqlx::query(insert)
            .bind(2_i64)
            .bind("a")
            .execute(&mut conn)
            .await;
        let error = same_name.expect_err("a taken name is refused");
        assert!(crate::db::is_unique_violation(&error), "{error}");
        let same_id = sqlx::query(insert)
            .bind(1_i64)
            .bind("b")
            .execute(&mut conn)
            .await;
        assert!(crate::db::is_unique_violation(&same_id.unwrap_err()));
        let Err(sqlx::Error::Database(no_name)) = sqlx::query(insert)
            .bind(3_i64)
            .bind(None::<String>)
            .execute(&mut conn)
            .await
        else {
            panic!("a missing name is refused");
        };
        assert_eq!(no_name.code().as_deref(), Some("1299"));
        assert!(
            no_name.message().contains("NOT NULL"),
            "{}",
            no_name.message()
        );
        let bad = conn.execute("SELEKT 1").await.unwrap_err();
        assert!(bad.to_string().contains("syntax error"), "{bad}");
        assert!(
            conn.execute("SELECT :named").await.is_err(),
            "named parameters are refused"
        );
    }

    #[tokio::test]
    async fn transactions_and_savepoints_commit_and_roll_back() {
        let mut conn = in_memory_with_table().await;
        let insert = "INSERT INTO t (id, name) VALUES ($1, $2)";
        {
            let mut outer = Connection::begin(&mut conn).await.unwrap();
            sqlx::query(insert)
                .bind(1_i64)
                .bind("kept")
                .execute(&mut *outer)
                .await
                .unwrap();
            {
                let mut inner = Connection::begin(&mut *outer).await.unwrap();
                sqlx::query(insert)
                    .bind(2_i64)
                    .bind("undone")
                    .execute(&mut *inner)
                    .await
                    .unwrap();
                inner.rollback().await.unwrap();
            }
            {
                let mut dropped = Connection::begin(&mut *outer).await.unwrap();
                sqlx::query(insert)
                    .bind(3_i64)
                    .bind("dropped")
                    .execute(&mut *dropped)
                    .await
                    .unwrap();
            }
            outer.commit().await.unwrap();
        }
        {
            let mut dropped = Connection::begin(&mut conn).await.unwrap();
            sqlx::query(insert)
                .bind(4_i64)
                .bind("dropped")
                .execute(&mut *dropped)
                .await
                .unwrap();
        }
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM t ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(names, ["kept"]);
    }

    /// What a subscriber at `filter` prints while `work` runs.
    fn logged(filter: &str, work: impl FnOnce()) -> String {
        let capture = crate::testing::LogCapture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, work);
        capture.text()
    }

    #[test]
    fn statements_are_logged_as_sqlx_logs_them() {
        let options: super::InlineSqliteOptions = "sqlite::memory:".parse().unwrap();
        let mut conn = super::InlineSqliteConnection::open(&options).unwrap();
        let debug = logged("sqlx::query=debug", || {
            conn.run_text("CREATE TABLE t (n INTEGER);\n  INSERT INTO t VALUES (1), (2)")
                .unwrap();
        });
        assert!(
            debug.contains("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2)"),
            "{debug}"
        );
        assert!(debug.contains("rows_affected=2"), "{debug}");
        let warn_only = logged("sqlx=warn", || {
            conn.run_text("SELECT n FROM t").unwrap();
        });
        assert!(
            warn_only.is_empty(),
            "a quick statement is not a warning: {warn_only}"
        );
    }

    #[tokio::test]
    async fn a_file_is_created_only_when_the_mode_says_so() {
        let dir = tempfile::tempdir().unwrap();
        // Letters a URL carries percent-encoded.
        let path = dir.path().join("données.db");
        let url = |mode: &str| format!("sqlite://{}?mode={mode}", path.display());
        crate::db::install_drivers();
        assert!(sqlx::AnyConnection::connect(&url("rw")).await.is_err());
        let mut writer = connect(&url("rwc")).await;
        writer.execute("CREATE TABLE t (id INTEGER)").await.unwrap();
        writer.execute("INSERT INTO t VALUES (1)").await.unwrap();
        let mut reader = connect(&url("ro")).await;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut reader)
            .await
            .unwrap();
        assert_eq!(count, 1);
        assert!(reader.execute("INSERT INTO t VALUES (2)").await.is_err());
        assert!(sqlx::AnyConnection::connect(&url("wat")).await.is_err());
        assert!(path.exists(), "the file has the path's own name");
    }
}
