// Package postgres keeps Switchboard's users, threads, members and messages in a SQL
// database through gorm. It implements chat.UserStore and chat.ThreadStore.
//
// Production runs it on PostgreSQL (OpenURL). `chatd dev` runs the very same store code
// on an embedded SQLite file (OpenSQLite), so every statement here is written in the SQL
// that both dialects share; only the schema files under migrations/ differ per dialect.
//
// Ids are the 36-character strings of chat.NewID (uuid in PostgreSQL, text in SQLite);
// times are stored in UTC at microsecond precision, PostgreSQL's, so a value reads back
// equal to what was written on either dialect.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	gormpg "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/internal/outage"
	"github.com/switchboard-chat/switchboard/pkg/internal/rawio"
)

// Config tunes a DB. Zero values get the defaults named on each field.
type Config struct {
	// MaxOpenConns bounds the connection pool (default 20). SQLite always uses 1: one
	// writer at a time is all it allows, and one connection means no SQLITE_BUSY within
	// the process.
	MaxOpenConns int
	// MaxIdleConns is how many connections stay open while idle (default MaxOpenConns,
	// so a busy host does not reconnect between bursts).
	MaxIdleConns int
	// ConnMaxLifetime recycles connections (default 30m), so a fail-over or a
	// PgBouncer restart is picked up without restarting the host.
	ConnMaxLifetime time.Duration
	// ConnMaxIdleTime closes connections idle this long (default 5m).
	ConnMaxIdleTime time.Duration
	// DisableGroupCommit stores every message in its own transaction. By default
	// PostgreSQL stores concurrent senders' messages together (threads hashed over
	// Committers shards, one transaction at a time per shard, up to MaxBatch messages
	// each); SQLite never does.
	DisableGroupCommit bool
	// Committers is the number of shards (default 1: one transaction at a time per
	// host). Each commit costs PostgreSQL about as much CPU as a few messages do, so
	// what counts under load is how many messages share it. With 4 shards, 2,000
	// one-to-one msg/s over three hosts averaged 1.2 messages a commit and PostgreSQL
	// used 63-77% of a core; with 1, 56-58%, and the cluster's p99 at that rate fell
	// (median of five runs 72 -> 52 ms). At 1,000 msg/s the two were the same. A hot
	// thread is unaffected: its messages always share one shard.
	Committers int
	MaxBatch   int // default 64
	// Now is the clock for created_at, joined_at and last_activity_at (default
	// time.Now); tests fix it.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.MaxOpenConns <= 0 {
		c.MaxOpenConns = 20
	}
	if c.MaxIdleConns <= 0 {
		c.MaxIdleConns = c.MaxOpenConns
	}
	if c.ConnMaxLifetime <= 0 {
		c.ConnMaxLifetime = 30 * time.Minute
	}
	if c.ConnMaxIdleTime <= 0 {
		c.ConnMaxIdleTime = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Committers <= 0 {
		c.Committers = 1
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 64
	}
}

const (
	dialectPostgres = "postgres"
	dialectSQLite   = "sqlite"
)

// DB is the SQL store. It is safe for concurrent use; Close releases its pool.
type DB struct {
	gdb     *gorm.DB
	sqlDB   *sql.DB
	dialect string
	now     func() time.Time
	log     *slog.Logger
	// committer batches CreateMessage on PostgreSQL (nil: one transaction each).
	committer *committer
	// ackChunk, when set, replaces ackPGChunk: tests make one flush span several calls.
	ackChunk int
	// membershipsChunk, when set, replaces membershipsChunk: tests make one call span
	// several queries.
	membershipsChunk int
	// down is set when a call of the socket path ran out of its caller's time (see
	// failFast).
	down outage.State
}

// errDatabaseDown answers the socket path's calls while the database is down for it.
var errDatabaseDown = errors.New("postgres: a recent call got no answer in time; not asking again until a probe gets one")

// downProbeEvery is how often, while the database is down for the socket path, a probe
// checks whether it answers again; each probe waits at most this long.
const downProbeEvery = time.Second

// failFast returns errDatabaseDown while the database is down for the socket path.
//
// A database that answers nothing (a silent partition or a dead router, rather than a
// refused or reset connection) costs each call its caller's whole timeout, and a
// socket handles its frames one after another: a few pipelined sends behind one that
// waits were answered unavailable 8 s and more after they were written, where the
// contract gives 5, and an ack waiting on a membership held up every send behind it
// until the link came back. So the first call that runs out of time (noteTimeout)
// marks the database down, the calls of the socket path (CreateMessage, Membership,
// MemberIDs) fail at once while it is, and a probe at most once per downProbeEvery,
// off those paths, finds it back.
func (d *DB) failFast() error {
	if !d.down.Down() {
		return nil
	}
	if d.down.ProbeDue(downProbeEvery) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), downProbeEvery)
			defer cancel()
			if d.Ping(ctx) == nil && d.down.Recover() {
				d.log.Info("database answers again: the socket path asks it again")
			}
		}()
	}
	return errDatabaseDown
}

// noteTimeout marks the database down for the socket path when err is a call that
// ran out of its caller's time (see failFast).
func (d *DB) noteTimeout(err error) {
	if err != nil && errors.Is(err, context.DeadlineExceeded) && d.down.Fail() {
		d.log.Warn("database did not answer in time: the socket path fails at once until a probe gets an answer",
			"err", err)
	}
}

var (
	_ chat.UserStore   = (*DB)(nil)
	_ chat.ThreadStore = (*DB)(nil)
)

// Open connects through dial (gorm.io/driver/postgres or github.com/glebarez/sqlite),
// sizes the pool and checks that the database answers within ctx. It does not migrate:
// call Migrate. gorm's own logger is silenced, so SQL and its arguments (password
// hashes, message bodies) are never logged. For SQLite use OpenSQLite, which also sets
// the per-connection pragmas the store relies on (foreign keys, busy timeout, WAL).
func Open(ctx context.Context, dial gorm.Dialector, cfg Config, log *slog.Logger) (*DB, error) {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dialect := dial.Name()
	if dialect != dialectPostgres && dialect != dialectSQLite {
		return nil, fmt.Errorf("open database: unsupported dialect %q", dialect)
	}
	gdb, err := gorm.Open(dial, &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		DisableAutomaticPing:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	sqlDB, err := gdb.DB()
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	if dialect == dialectSQLite {
		// One connection: SQLite has one writer anyway, and the pragmas in the DSN
		// then hold for every statement. Never recycle it.
		sqlDB.SetMaxOpenConns(1)
		sqlDB.SetMaxIdleConns(1)
		sqlDB.SetConnMaxLifetime(0)
		sqlDB.SetConnMaxIdleTime(0)
	} else {
		sqlDB.SetMaxOpenConns(cfg.MaxOpenConns)
		sqlDB.SetMaxIdleConns(min(cfg.MaxIdleConns, cfg.MaxOpenConns))
		sqlDB.SetConnMaxLifetime(cfg.ConnMaxLifetime)
		sqlDB.SetConnMaxIdleTime(cfg.ConnMaxIdleTime)
	}
	d := &DB{gdb: gdb, sqlDB: sqlDB, dialect: dialect, now: cfg.Now, log: log}
	if err := d.Ping(ctx); err != nil {
		_ = sqlDB.Close()
		return nil, err
	}
	if dialect == dialectPostgres && !cfg.DisableGroupCommit {
		d.committer = newCommitter(d, cfg.Committers, cfg.MaxBatch, log)
	}
	log.Debug("database open", "dialect", dialect)
	return d, nil
}

// OpenURL opens PostgreSQL at a postgres:// (or postgresql://) URL; see Open.
func OpenURL(ctx context.Context, rawURL string, cfg Config, log *slog.Logger) (*DB, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// The URL may hold a password: never echo it.
		return nil, errors.New("open database: the URL must be postgres://user@host:port/dbname")
	}
	pc, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, errors.New("open database: the URL cannot be parsed (host, port, user, database or a parameter)")
	}
	pc.DialFunc = rawio.WrapDial(pc.DialFunc) // see package rawio
	return Open(ctx, gormpg.New(gormpg.Config{Conn: stdlib.OpenDB(*pc)}), cfg, log)
}

// OpenSQLite opens the SQLite file at path, creating it and its directory if needed,
// with foreign keys on, a 5 s busy timeout, WAL journaling and IMMEDIATE transactions
// (every transaction of this store writes, so taking the write lock up front avoids
// deadlocked upgrades between processes sharing the file). See Open.
func OpenSQLite(ctx context.Context, path string, cfg Config, log *slog.Logger) (*DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open sqlite: bad path %q", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	return Open(ctx, sqlite.Open(path+"?"+q.Encode()), cfg, log)
}

// Close releases the connection pool. Calls in flight fail; the DB is not usable after.
func (d *DB) Close() error {
	if d.committer != nil {
		d.committer.stop()
	}
	return d.sqlDB.Close()
}

// PoolStats reports the connection pool: how many connections are open and in use
// against the limit, and how often and how long callers waited for one, which is the
// first sign that CHAT_DB_MAX_CONNS (or the server's max_connections) is too low.
func (d *DB) PoolStats() sql.DBStats { return d.sqlDB.Stats() }

// CommitStats reports how many transactions the group commit has run for the send path
// and how many messages they carried; messages over batches is how many sends shared
// each transaction (a batch that must be redone one message at a time counts again).
// Both stay 0 without group commit (SQLite, Config.DisableGroupCommit).
func (d *DB) CommitStats() (batches, messages int64) {
	if d.committer == nil {
		return 0, 0
	}
	return d.committer.batches.Load(), d.committer.messages.Load()
}

// Ping checks that the database answers (readiness probes, start-up retries).
func (d *DB) Ping(ctx context.Context) error {
	if err := d.sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s database: %w", d.dialect, err)
	}
	return nil
}

// nowUTC is the store's clock at the precision both dialects keep.
func (d *DB) nowUTC() time.Time {
	return d.now().UTC().Truncate(time.Microsecond)
}

// scanRow runs a query expected to return at most one row and scans it. It returns
// sql.ErrNoRows when there is none.
func scanRow(db *gorm.DB, query string, args []any, dest ...any) error {
	tx := db.Raw(query, args...)
	row := tx.Row()
	if row == nil {
		if tx.Error != nil {
			return tx.Error
		}
		return errors.New("query returned no result")
	}
	return row.Scan(dest...)
}

// exec runs a statement and returns the rows it affected.
func exec(db *gorm.DB, query string, args ...any) (int64, error) {
	res := db.Exec(query, args...)
	return res.RowsAffected, res.Error
}

// SQLite extended result codes (sqlite3.h), matched against the driver's Code().
const (
	sqliteConstraintForeignKey = 787
	sqliteConstraintPrimaryKey = 1555
	sqliteConstraintUnique     = 2067
)

// sqlState reports the SQLSTATE of a PostgreSQL error (pgconn.PgError) or "".
func sqlState(err error) string {
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		return pg.SQLState()
	}
	return ""
}

// sqliteCode reports the extended result code of a SQLite error (go-sqlite's Error) or 0.
func sqliteCode(err error) int {
	var se interface{ Code() int }
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

// isUniqueViolation reports whether err is a unique or primary key violation on either
// dialect.
func isUniqueViolation(err error) bool {
	if sqlState(err) == "23505" {
		return true
	}
	c := sqliteCode(err)
	return c == sqliteConstraintUnique || c == sqliteConstraintPrimaryKey
}

// isForeignKeyViolation reports whether err is a foreign key violation on either dialect.
func isForeignKeyViolation(err error) bool {
	return sqlState(err) == "23503" || sqliteCode(err) == sqliteConstraintForeignKey
}
