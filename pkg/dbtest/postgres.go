// Package dbtest gives each test its own real store: a fresh PostgreSQL database, a
// fresh Redis key prefix. Tests stay independent and can run in parallel.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	gormpg "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/switchboard-chat/switchboard/pkg/postgres"
)

// DefaultDatabaseURL is the server tests use when TEST_DATABASE_URL is not set: the
// local PostgreSQL that scripts/test.sh (or docker-compose) provides.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// NewDB returns a store on a fresh, migrated database of its own; see NewDatabaseURL.
// The store is closed, and the database dropped, when the test ends.
func NewDB(tb testing.TB) *postgres.DB {
	tb.Helper()
	dbURL := NewDatabaseURL(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := postgres.OpenURL(ctx, dbURL, postgres.Config{MaxOpenConns: 10}, nil)
	if err != nil {
		tb.Fatalf("dbtest: open test database: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() }) // runs before the drop registered earlier
	return db
}

// NewDatabaseURL creates a randomly named database (sb_test_<random>) on the server of
// TEST_DATABASE_URL (default DefaultDatabaseURL), applies the migrations and returns
// its URL, for tests that open their own connections or start chatd processes. The
// database is dropped, with any connections still open to it, when the test ends.
//
// When the server cannot be reached the test is skipped, or fails when CI=true, so
// that CI never passes by skipping.
func NewDatabaseURL(tb testing.TB) string {
	tb.Helper()
	dbURL := NewEmptyDatabaseURL(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := postgres.OpenURL(ctx, dbURL, postgres.Config{MaxOpenConns: 1}, nil)
	if err != nil {
		tb.Fatalf("dbtest: open test database: %v", err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		tb.Fatalf("dbtest: migrate test database: %v", err)
	}
	return dbURL
}

// NewEmptyDatabaseURL is NewDatabaseURL without the migrations, for tests of Migrate
// itself.
func NewEmptyDatabaseURL(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		base = DefaultDatabaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		tb.Fatalf("dbtest: TEST_DATABASE_URL must be a postgres:// URL")
	}

	admin := openAdmin(tb, base, u)
	defer closeAdmin(admin)
	name := "sb_test_" + randomHex(tb, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := admin.WithContext(ctx).Exec(`CREATE DATABASE ` + name).Error; err != nil {
		tb.Fatalf("dbtest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		// A fresh admin connection: the test's may be closed by now.
		admin := openAdmin(tb, base, u)
		defer closeAdmin(admin)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := admin.WithContext(ctx).Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`).Error; err != nil {
			tb.Errorf("dbtest: drop database %s: %v", name, err)
		}
	})

	du := *u
	du.Path = "/" + name
	du.RawPath = ""
	return du.String()
}

// openAdmin connects to the server's maintenance database (the one in the URL), or
// skips (fails under CI=true) the test when the server cannot be reached.
func openAdmin(tb testing.TB, base string, u *url.URL) *gorm.DB {
	tb.Helper()
	admin, err := gorm.Open(gormpg.Open(base), &gorm.Config{Logger: logger.Discard, DisableAutomaticPing: true})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = admin.WithContext(ctx).Exec(`SELECT 1`).Error
		if err != nil {
			closeAdmin(admin)
		}
	}
	if err != nil {
		msg := fmt.Sprintf("dbtest: PostgreSQL at TEST_DATABASE_URL=%s is unreachable (%v); "+
			"run the tests with scripts/test.sh, which starts it, or point TEST_DATABASE_URL at a server", u.Redacted(), err)
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return admin
}

func closeAdmin(admin *gorm.DB) {
	if sqlDB, err := admin.DB(); err == nil {
		_ = sqlDB.Close()
	}
}

func randomHex(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("dbtest: random name: %v", err)
	}
	return hex.EncodeToString(b)
}
