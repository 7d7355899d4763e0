package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for the floor only
	goredis "github.com/redis/go-redis/v9"
)

// The floor: what the stores cost at the least, measured next to the run when
// --redis-url / --database-url are given. These are raw round trips from chatbench to
// the stores, not product calls: a Redis PING and a one-row autocommit PostgreSQL
// INSERT (one commit, one WAL flush) into a scratch table shaped like a message.

// FloorResult holds the floor measurements.
type FloorResult struct {
	RedisPing      *Summary `json:"redis_ping,omitempty"`
	PostgresInsert *Summary `json:"postgres_insert,omitempty"`
	Errors         []string `json:"errors,omitempty"`
}

func (b *bench) floor(ctx context.Context) *FloorResult {
	if b.opt.redisURL == "" && b.opt.databaseURL == "" {
		return nil
	}
	f := &FloorResult{}
	if b.opt.redisURL != "" {
		s, err := redisFloor(ctx, b.opt.redisURL, b.opt.floorN)
		if err != nil {
			f.Errors = append(f.Errors, "redis: "+err.Error())
		} else {
			f.RedisPing = &s
		}
	}
	if b.opt.databaseURL != "" {
		s, err := postgresFloor(ctx, b.opt.databaseURL, b.opt.floorN)
		if err != nil {
			f.Errors = append(f.Errors, "postgres: "+err.Error())
		} else {
			f.PostgresInsert = &s
		}
	}
	return f
}

func redisFloor(ctx context.Context, url string, n int) (Summary, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return Summary{}, err
	}
	opt.PoolSize = 1
	rdb := goredis.NewClient(opt)
	defer rdb.Close()
	h := NewHistogram()
	for i := 0; i < n+10; i++ {
		t := time.Now()
		if err := rdb.Ping(ctx).Err(); err != nil {
			return Summary{}, err
		}
		if i >= 10 { // the first few open the connection
			h.RecordDuration(time.Since(t))
		}
	}
	return h.Summary(), nil
}

func postgresFloor(ctx context.Context, url string, n int) (Summary, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return Summary{}, err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return Summary{}, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS chatbench_floor (
		id text PRIMARY KEY, thread_id text NOT NULL, seq bigint NOT NULL, body text NOT NULL,
		created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return Summary{}, err
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS chatbench_floor`)
	}()
	h := NewHistogram()
	run := time.Now().UnixNano()
	for i := 0; i < n+10; i++ {
		t := time.Now()
		if _, err := conn.ExecContext(ctx, `INSERT INTO chatbench_floor (id, thread_id, seq, body) VALUES ($1, $2, $3, $4)`,
			fmt.Sprintf("%d-%d", run, i), "floor", i, "t=0 s=0 k=0 floor insert of a message-sized row"); err != nil {
			return Summary{}, err
		}
		if i >= 10 {
			h.RecordDuration(time.Since(t))
		}
	}
	return h.Summary(), nil
}

func (f *FloorResult) print(w io.Writer) {
	if f.RedisPing != nil {
		fmt.Fprintf(w, "floor:   Redis PING       %s\n", fmtSummary(*f.RedisPing))
	}
	if f.PostgresInsert != nil {
		fmt.Fprintf(w, "floor:   PostgreSQL INSERT %s\n", fmtSummary(*f.PostgresInsert))
	}
	for _, e := range f.Errors {
		fmt.Fprintf(w, "floor:   %s\n", e)
	}
}
