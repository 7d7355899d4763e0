// Package password hashes passwords with bcrypt, the chat.PasswordHasher of production.
package password

import (
	"fmt"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// DefaultCost is bcrypt's work factor: 12 costs about a quarter second on one core,
// which makes offline guessing expensive without making login slow.
const DefaultCost = 12

// Bcrypt implements chat.PasswordHasher.
type Bcrypt struct {
	cost  int
	dummy []byte
}

var _ chat.PasswordHasher = (*Bcrypt)(nil)

// New returns a hasher of the given cost (DefaultCost when 0). Tests use
// bcrypt.MinCost to stay fast; nothing else should.
func New(cost int) *Bcrypt {
	if cost == 0 {
		cost = DefaultCost
	}
	// The dummy hash has the same cost as real ones so that a login for an unknown
	// user takes as long as a wrong password.
	d, err := bcrypt.GenerateFromPassword([]byte("switchboard-dummy-password"), cost)
	if err != nil {
		panic(fmt.Sprintf("bcrypt dummy hash: %v", err))
	}
	return &Bcrypt{cost: cost, dummy: d}
}

// Hash returns the bcrypt hash of password.
func (b *Bcrypt) Hash(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), b.cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// Compare returns nil when password matches hash.
func (b *Bcrypt) Compare(hash, password string) error {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
}

// Dummy spends the time of one comparison.
func (b *Bcrypt) Dummy(password string) {
	_ = bcrypt.CompareHashAndPassword(b.dummy, []byte(password))
}
