package postgres_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	gormpg "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
)

// migrationFiles lists the versions a dialect's migrations directory holds.
func migrationFiles(t *testing.T, dialect string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("migrations", dialect))
	if err != nil {
		t.Fatal(err)
	}
	var versions []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") {
			versions = append(versions, strings.TrimSuffix(e.Name(), ".sql"))
		}
	}
	if len(versions) == 0 {
		t.Fatalf("no migrations in migrations/%s", dialect)
	}
	return versions
}

type migrationRecord struct {
	Version   string
	AppliedAt time.Time
}

// recorded reads schema_migrations through a connection of the test's own.
func recorded(t *testing.T, dial gorm.Dialector) []migrationRecord {
	t.Helper()
	gdb, err := gorm.Open(dial, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := gdb.DB()
	defer sqlDB.Close()
	var recs []migrationRecord
	if err := gdb.Raw(`SELECT version, applied_at FROM schema_migrations ORDER BY version`).Scan(&recs).Error; err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	return recs
}

func versionsOf(recs []migrationRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Version)
	}
	return out
}

// migrateAtOnce runs Migrate on every db at the same moment, as hosts starting together
// do, and fails on any error.
func migrateAtOnce(t *testing.T, dbs []*postgres.DB) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make(chan error, len(dbs))
	)
	for _, db := range dbs {
		wg.Go(func() {
			<-start
			errs <- db.Migrate(context.Background())
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent migrate: %v", err)
		}
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	type dialect struct {
		name string
		// fresh returns an empty database and a way to open a store on it.
		fresh func(t *testing.T) (open func() *postgres.DB, raw gorm.Dialector)
	}
	dialects := []dialect{
		{"postgres", func(t *testing.T) (func() *postgres.DB, gorm.Dialector) {
			dbURL := dbtest.NewEmptyDatabaseURL(t)
			return func() *postgres.DB {
				db, err := postgres.OpenURL(context.Background(), dbURL, postgres.Config{MaxOpenConns: 2}, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = db.Close() })
				return db
			}, gormpg.Open(dbURL)
		}},
		{"sqlite", func(t *testing.T) (func() *postgres.DB, gorm.Dialector) {
			path := filepath.Join(t.TempDir(), "chat.db")
			return func() *postgres.DB {
				db, err := postgres.OpenSQLite(context.Background(), path, postgres.Config{}, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = db.Close() })
				return db
			}, sqlite.Open(path)
		}},
	}
	for _, d := range dialects {
		t.Run(d.name+"/idempotent", func(t *testing.T) {
			t.Parallel()
			open, raw := d.fresh(t)
			db := open()
			ctx := context.Background()
			if err := db.Migrate(ctx); err != nil {
				t.Fatalf("first migrate: %v", err)
			}
			first := recorded(t, raw)
			if got, want := versionsOf(first), migrationFiles(t, d.name); !slices.Equal(got, want) {
				t.Fatalf("recorded versions = %v, want %v", got, want)
			}
			alice := mustUser(t, db, "alice")

			if err := db.Migrate(ctx); err != nil {
				t.Fatalf("second migrate: %v", err)
			}
			if again := recorded(t, raw); !slices.Equal(again, first) {
				t.Fatalf("second migrate changed schema_migrations: %v, was %v", again, first)
			}
			if u, err := db.UserByID(ctx, alice.ID); err != nil || u != alice {
				t.Fatalf("data after second migrate: %v, %v; want %v", u, err, alice)
			}
		})
		t.Run(d.name+"/concurrent", func(t *testing.T) {
			t.Parallel()
			open, raw := d.fresh(t)
			hosts := []*postgres.DB{open(), open(), open()}
			migrateAtOnce(t, hosts)
			if got, want := versionsOf(recorded(t, raw)), migrationFiles(t, d.name); !slices.Equal(got, want) {
				t.Fatalf("recorded versions = %v, want each of %v once", got, want)
			}
			// Every host can use the schema.
			for i, db := range hosts {
				mustUser(t, db, "user"+string(rune('a'+i)))
			}
		})
	}
}

func TestOpenRejectsBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, err := postgres.OpenURL(ctx, "mysql://root:secret@localhost/db", postgres.Config{}, nil); err == nil {
		t.Error("OpenURL accepted a mysql:// URL")
	} else if strings.Contains(err.Error(), "secret") {
		t.Errorf("OpenURL error leaks the password: %v", err)
	}
	if _, err := postgres.OpenSQLite(ctx, "", postgres.Config{}, nil); err == nil {
		t.Error("OpenSQLite accepted an empty path")
	}
}

func TestPingAndClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		if err := db.Ping(ctx); err != nil {
			t.Fatalf("ping: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if err := db.Ping(ctx); err == nil {
			t.Fatal("ping after close succeeded")
		}
	})
}
