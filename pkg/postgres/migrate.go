package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// The schema, one directory per dialect. Files are applied in name order, so they are
// numbered: 0001_init.sql, 0002_... A file is never edited once released; a change is
// a new file, in both directories.
//
//go:embed migrations/postgres/*.sql migrations/sqlite/*.sql
var migrationFS embed.FS

// migrationLockKey is the PostgreSQL advisory lock that serialises Migrate across hosts.
// Advisory locks are per database, so tests migrating separate databases do not wait
// on each other.
const migrationLockKey int64 = 0x5357_424d_4947 // "SWBMIG"

// schemaMigrationsDDL creates the table that records applied migrations.
var schemaMigrationsDDL = map[string]string{
	dialectPostgres: `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    text PRIMARY KEY,
		applied_at timestamptz NOT NULL
	)`,
	dialectSQLite: `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    TEXT PRIMARY KEY,
		applied_at TIMESTAMP NOT NULL
	)`,
}

// Migrate applies the embedded migrations not yet recorded in schema_migrations, in
// name order, each in its own transaction together with its record, so a migration is
// either wholly applied and recorded or not at all. It is idempotent, and safe when
// several hosts run it at once: on PostgreSQL the whole run holds an advisory lock, so
// the others wait and then find nothing left to do; on SQLite each migration's
// transaction takes the write lock before checking its record.
func (d *DB) Migrate(ctx context.Context) (err error) {
	files, err := fs.Glob(migrationFS, "migrations/"+d.dialect+"/*.sql")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	slices.Sort(files)

	// One connection for the whole run: PostgreSQL's session-level advisory lock
	// belongs to a connection.
	conn, err := d.sqlDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()

	if d.dialect == dialectPostgres {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLockKey); err != nil {
			return fmt.Errorf("migrate: take the migration lock: %w", err)
		}
		defer func() {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, uerr := conn.ExecContext(uctx, `SELECT pg_advisory_unlock($1)`, migrationLockKey); uerr != nil {
				// A pooled connection must not keep holding the lock: drop it, which
				// ends its session and so releases the lock.
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
				d.log.Warn("migrate: release the migration lock", "err", uerr)
			}
		}()
	}
	if _, err := conn.ExecContext(ctx, schemaMigrationsDDL[d.dialect]); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}

	applied := 0
	for _, f := range files {
		version := strings.TrimSuffix(path.Base(f), ".sql")
		body, err := migrationFS.ReadFile(f)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", version, err)
		}
		start := time.Now()
		done, err := d.applyMigration(ctx, conn, version, string(body))
		if err != nil {
			return fmt.Errorf("migrate %s: %w", version, err)
		}
		if done {
			applied++
			d.log.Info("migration applied", "version", version, "took", time.Since(start).Round(time.Millisecond))
		}
	}
	d.log.Debug("migrations up to date", "dialect", d.dialect, "applied", applied, "known", len(files))
	return nil
}

// applyMigration runs one migration and records it in one transaction, unless it is
// recorded already. It reports whether it applied it. The $n placeholders work on both
// drivers.
func (d *DB) applyMigration(ctx context.Context, conn *sql.Conn, version, body string) (applied bool, err error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, tx.Commit()
	}
	if _, err := tx.ExecContext(ctx, body); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, version, d.nowUTC()); err != nil {
		return false, err
	}
	return true, tx.Commit()
}
