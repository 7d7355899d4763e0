package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// CreateUser stores a new account; username must already be normalized
// (chat.NormalizeUsername). Returns chat.EUsernameTaken when the name exists, also when
// a concurrent registration of the same name won the race.
func (d *DB) CreateUser(ctx context.Context, username, passwordHash string) (chat.User, error) {
	u := chat.User{ID: chat.NewID(), Username: username}
	_, err := exec(d.gdb.WithContext(ctx),
		`INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, ?, ?)`,
		u.ID, u.Username, passwordHash, d.nowUTC())
	if isUniqueViolation(err) {
		return chat.User{}, chat.Errorf(chat.EUsernameTaken, "username %q is taken", username)
	} else if err != nil {
		return chat.User{}, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

// UserCredentials returns the user named username and its password hash, for login.
// Returns chat.ENotFound when there is no such user.
func (d *DB) UserCredentials(ctx context.Context, username string) (chat.User, string, error) {
	var (
		u    chat.User
		hash string
	)
	err := scanRow(d.gdb.WithContext(ctx), `SELECT id, username, password_hash FROM users WHERE username = ?`,
		[]any{username}, &u.ID, &u.Username, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return chat.User{}, "", chat.Errorf(chat.ENotFound, "no such user")
	} else if err != nil {
		return chat.User{}, "", fmt.Errorf("user credentials: %w", err)
	}
	return u, hash, nil
}

// UsersByUsername returns the users that exist among usernames (already normalized), in
// no particular order; names that do not exist are simply absent.
func (d *DB) UsersByUsername(ctx context.Context, usernames []string) ([]chat.User, error) {
	users := []chat.User{}
	if len(usernames) == 0 {
		return users, nil
	}
	rows, err := d.gdb.WithContext(ctx).Raw(`SELECT id, username FROM users WHERE username IN ?`, usernames).Rows()
	if err != nil {
		return nil, fmt.Errorf("users by username: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u chat.User
		if err := rows.Scan(&u.ID, &u.Username); err != nil {
			return nil, fmt.Errorf("users by username: %w", err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("users by username: %w", err)
	}
	return users, nil
}

// UserByID returns one user. Returns chat.ENotFound, also for a malformed id.
func (d *DB) UserByID(ctx context.Context, id string) (chat.User, error) {
	if !chat.ValidID(id) {
		return chat.User{}, chat.Errorf(chat.ENotFound, "no such user")
	}
	var u chat.User
	err := scanRow(d.gdb.WithContext(ctx), `SELECT id, username FROM users WHERE id = ?`, []any{id}, &u.ID, &u.Username)
	if errors.Is(err, sql.ErrNoRows) {
		return chat.User{}, chat.Errorf(chat.ENotFound, "no such user")
	} else if err != nil {
		return chat.User{}, fmt.Errorf("user %s: %w", id, err)
	}
	return u, nil
}
